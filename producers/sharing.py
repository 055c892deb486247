"""Several pollers share the registered sources through a consumer group on the registry topic.

The registry topic is keyed by source id, so each source lives on one of its partitions; a poller owns the sources
of the partitions the group assigns it, and reads those partitions from the beginning (never committing) to know
them, and every later change, live. When a poller joins, leaves or dies, the group moves partitions, and with them
sources: a dead poller's sources move once its session times out (`session.timeout.ms`, 6 s).

Exactly one poller per source: with the cooperative-sticky assignor a rebalance revokes only the partitions that
move, and the revocation callback holds the rebalance until the poller has finished the file in flight on a
revoked source, flushed it and written its checkpoint (`begin`/`end` bracket a source's poll; `owns` turns false
at once so the poll stops between files). Only then can the next owner read that checkpoint and go on from it. If
the poll does not finish within `REVOKE_WAIT_S` the rebalance goes ahead anyway, and the two pollers may publish
the same files (duplicates, never a gap), which the logs say.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from schemas import Codec
from trailhouse.config import Settings
from trailhouse.kafka import consumer_options, translate
from trailhouse.sources import Source

log = logging.getLogger(__name__)

REVOKE_WAIT_S = 120.0


class SharedSources:
    """This poller's share of the registry: a background thread runs the group member; `close()` leaves."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self._settings = settings
        self._codec = Codec.of("SourceConfig")
        self._consumer = Consumer(
            consumer_options(settings, bootstrap, settings.poll_group)
            | {"partition.assignment.strategy": "cooperative-sticky", "enable.partition.eof": True}
        )
        self._cond = threading.Condition()
        self._partitions: dict[int, dict[str, Source]] = {}  # assigned partition -> its sources
        self._caught_up: set[int] = set()
        self._revoking: set[int] = set()
        self._in_flight: str | None = None
        self._closing = threading.Event()
        self._failure: Exception | None = None
        self.generation = 0  # changes with every assignment change: checkpoints must be read again
        self._thread = threading.Thread(target=self._run, name="poll-group", daemon=True)

    def start(self) -> SharedSources:
        self._consumer.subscribe(
            [self._settings.topic_registry], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Leave the group (the other pollers take this one's sources at once)."""
        self._closing.set()
        self._thread.join(30)

    # --- what the poller asks ---------------------------------------------------------------------------------

    def sources(self) -> list[Source]:
        """The sources of the assigned partitions read up to their end, minus those being handed over."""
        self._raise_failure()
        with self._cond:
            return sorted(
                (
                    source
                    for partition, sources in self._partitions.items()
                    if partition in self._caught_up and partition not in self._revoking
                    for source in sources.values()
                ),
                key=lambda s: s.source_id,
            )

    @property
    def ready(self) -> bool:
        """True once the group assigned partitions and each has been read to its end."""
        with self._cond:
            return bool(self._partitions) and self._caught_up >= set(self._partitions)

    @property
    def partitions(self) -> list[int]:
        with self._cond:
            return sorted(self._partitions)

    def owns(self, source_id: str) -> bool:
        with self._cond:
            return self._partition_of(source_id) is not None

    def begin(self, source_id: str) -> bool:
        """Mark `source_id` in flight, if this poller still owns it; a revocation waits for `end()`."""
        with self._cond:
            if self._partition_of(source_id) is None:
                return False
            self._in_flight = source_id
            return True

    def end(self) -> None:
        with self._cond:
            self._in_flight = None
            self._cond.notify_all()

    def _partition_of(self, source_id: str) -> int | None:
        for partition, sources in self._partitions.items():
            if source_id in sources and partition not in self._revoking:
                return partition
        return None

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    # --- the group member's thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                message = self._consumer.poll(0.5)
                if message is not None:
                    self._take(message)
        except KafkaException as exc:
            self._failure = translate(exc, f"read {self._settings.topic_registry} in group {self._settings.poll_group}")
            log.error("%s", self._failure)
        finally:
            self._consumer.close()  # leaves the group: a rebalance hands this poller's partitions over

    def _take(self, message: Any) -> None:
        error = message.error()
        partition = message.partition()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                with self._cond:
                    if partition in self._partitions:
                        self._caught_up.add(partition)
                return
            raise KafkaException(error)
        source_id = message.key().decode()
        value = message.value()
        with self._cond:
            sources = self._partitions.get(partition)
            if sources is None:
                return
            if value is None:
                sources.pop(source_id, None)
            else:
                sources[source_id] = Source.from_record(self._codec.decode(value))

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:  # a rebalance that moved nothing here (cooperative protocol)
            return
        with self._cond:
            for tp in partitions:
                self._partitions[tp.partition] = {}
                self._caught_up.discard(tp.partition)
            self.generation += 1
        log.info("poll group: took partition(s) %s of %s", [tp.partition for tp in partitions], self._topic)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Hold the rebalance until no source of `partitions` is in flight here, then drop them."""
        self._drop({tp.partition for tp in partitions}, wait=True)

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The group gave the partitions away already (this member's session timed out): stop, do not wait."""
        log.warning("poll group: lost partition(s) %s (session timed out)", [tp.partition for tp in partitions])
        self._drop({tp.partition for tp in partitions}, wait=False)

    def _drop(self, numbers: set[int], *, wait: bool) -> None:
        if not numbers:
            return
        with self._cond:
            self._revoking |= numbers
            finished = not wait or self._cond.wait_for(
                lambda: self._in_flight is None or self._in_flight not in self._sources_of(numbers), REVOKE_WAIT_S
            )
            if not finished:
                log.warning(
                    "poll group: %s was still being polled %.0fs after its partition was revoked; the next owner may "
                    "publish some of its files again (duplicates, removed downstream)",
                    self._in_flight,
                    REVOKE_WAIT_S,
                )
            for number in numbers:
                self._partitions.pop(number, None)
                self._caught_up.discard(number)
            self._revoking -= numbers
            self.generation += 1
        log.info("poll group: handed over partition(s) %s of %s", sorted(numbers), self._topic)

    def _sources_of(self, partitions: set[int]) -> set[str]:
        return {source_id for p in partitions for source_id in self._partitions.get(p, {})}

    @property
    def _topic(self) -> str:
        return self._settings.topic_registry
