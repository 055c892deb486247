"""Which Kafka a command talks to: the configured cluster, or the embedded broker of the data directory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from trailhouse.config import Settings
from trailhouse.embedded import EmbeddedKafka
from trailhouse.errors import ConfigError
from trailhouse.kafka import ensure_topics


@contextmanager
def kafka(settings: Settings) -> Iterator[tuple[str, EmbeddedKafka | None]]:
    """Yield (bootstrap, embedded broker or None). The embedded broker is started, or shared with the
    trailhouse process that already runs it in this data directory; it is stopped on exit if started here."""
    if settings.kafka_bootstrap:
        ensure_topics(settings, settings.kafka_bootstrap)
        yield settings.kafka_bootstrap, None
        return
    with EmbeddedKafka(settings) as embedded:
        yield embedded.bootstrap, embedded


@contextmanager
def shared_kafka(settings: Settings, stage: str) -> Iterator[str]:
    """Kafka for a single stage (`trailhouse poll|worker|sink`), which only makes sense on a shared broker."""
    with kafka(settings) as (bootstrap, embedded):
        if embedded is not None and embedded.owner:
            raise ConfigError(
                f"`trailhouse {stage}` runs one stage against a Kafka cluster the other stages share: set "
                "--kafka-bootstrap (or TRAILHOUSE_KAFKA_BOOTSTRAP), or use `trailhouse run` to run every stage "
                "on the embedded stack"
            )
        yield bootstrap
