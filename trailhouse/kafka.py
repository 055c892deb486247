"""Kafka plumbing shared by every stage: client options, topic creation, offsets, compacted-topic tables.

One place builds librdkafka options from `Settings`, so the security options (trailhouse/security.py) and the
knobs the embedded broker needs are set once for the poller, the sink and the command line alike. librdkafka
errors are translated here into `KafkaUnavailable` (a retry may help) or `ConfigError` (it will not).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from schemas import Codec
from trailhouse.config import Settings
from trailhouse.errors import ConfigError, KafkaUnavailable
from trailhouse.security import kafka_security, librdkafka_options

REQUEST_TIMEOUT_S = 15.0
_LIBRDKAFKA_LOG = logging.getLogger("trailhouse.librdkafka")
log = logging.getLogger(__name__)


def client_options(settings: Settings, bootstrap: str) -> dict[str, Any]:
    """Options every librdkafka client of trailhouse shares, security included."""
    return {
        "bootstrap.servers": bootstrap,
        "client.id": "trailhouse",
        "logger": _LIBRDKAFKA_LOG,
    } | librdkafka_options(kafka_security(settings))


def producer_options(settings: Settings, bootstrap: str) -> dict[str, Any]:
    return client_options(settings, bootstrap) | {
        "acks": "all",
        "linger.ms": 20,
        "compression.type": settings.kafka_compression,
        # Room for a whole RawBatch chunk plus framing; the broker's own limit is what chunking stays under.
        "message.max.bytes": max(settings.raw_chunk_bytes + 64 * 1024, 1_000_000),
        # murmur2 is the Java client's partitioner (and aiokafka's): the same key lands on the same partition
        # whichever trailhouse stage or downstream tool produces it.
        "partitioner": "murmur2_random",
    }


def watch_consumer_stats(listener: Callable[[dict[str, Any]], None]) -> None:
    """Hand librdkafka's statistics of every group consumer this process creates from now on to `listener`.

    librdkafka delivers them every few seconds from inside the consumer's own poll/consume calls, so a report
    also proves that the consumer loop is turning (the sink's liveness), besides carrying lag and group state.
    Process-wide, like the Prometheus registry the listener feeds.
    """
    _stats_listeners.append(listener)


_stats_listeners: list[Callable[[dict[str, Any]], None]] = []
STATS_INTERVAL_MS = 5000


def _on_stats(report: str) -> None:
    try:
        parsed = json.loads(report)
        for listener in _stats_listeners:
            listener(parsed)
    except Exception:  # statistics must never break the consumer that reports them
        _LIBRDKAFKA_LOG.warning("could not read librdkafka statistics", exc_info=True)


def consumer_options(settings: Settings, bootstrap: str, group: str) -> dict[str, Any]:
    statistics = {"statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": _on_stats} if _stats_listeners else {}
    return (
        client_options(settings, bootstrap)
        | statistics
        | {
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            # Short heartbeats make a group (re)join take seconds instead of ~20 s with librdkafka's defaults.
            "heartbeat.interval.ms": 500,
            "session.timeout.ms": 6000,
            "fetch.message.max.bytes": max(settings.raw_chunk_bytes + 64 * 1024, 1_048_576),
        }
    )


def translate(exc: KafkaException, action: str) -> Exception:
    """A librdkafka error as a trailhouse error, chosen by its structured code."""
    err: KafkaError = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None  # type: ignore[assignment]
    if err is not None and not err.retriable() and err.fatal():
        return ConfigError(f"Kafka refused to {action}: {err.str()}")
    if err is not None and err.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED):
        return ConfigError(f"Kafka refused to {action}: {err.str()}; grant the principal access")
    reason = err.str() if err is not None else str(exc)
    return KafkaUnavailable(f"Kafka did not {action}: {reason}; check that the brokers are up and reachable")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    compacted: bool = False


def pipeline_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic trailhouse creates. All have the same partition count: the workers consume the raw topic and
    the checkpoints (poll outcomes) together, co-partitioned by source id."""
    return [
        TopicSpec(settings.topic_raw),
        TopicSpec(settings.topic_events),
        TopicSpec(settings.topic_dlq),
        TopicSpec(settings.topic_sources, compacted=True),
        TopicSpec(settings.topic_alerts),
        TopicSpec(settings.topic_insights),
        TopicSpec(settings.topic_registry, compacted=True),
        TopicSpec(settings.topic_checkpoints, compacted=True),
    ]


def ensure_topics(settings: Settings, bootstrap: str, topics: Iterable[TopicSpec] | None = None) -> None:
    """Create the topics trailhouse uses if they do not exist yet (idempotent, safe from several processes)."""
    specs = list(topics if topics is not None else pipeline_topics(settings))
    admin = AdminClient(client_options(settings, bootstrap))
    try:
        existing = set(admin.list_topics(timeout=REQUEST_TIMEOUT_S).topics)
    except KafkaException as exc:
        raise translate(exc, f"list topics at {bootstrap}") from exc
    missing = [
        NewTopic(
            spec.name,
            num_partitions=settings.kafka_partitions,
            replication_factor=settings.kafka_replication,
            config={"cleanup.policy": "compact"} if spec.compacted else {},
        )
        for spec in specs
        if spec.name not in existing
    ]
    if not missing:
        return
    for name, future in admin.create_topics(missing, request_timeout=REQUEST_TIMEOUT_S).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise translate(exc, f"create topic {name}") from exc


def partitions_of(consumer: Consumer, topic: str) -> list[int]:
    try:
        metadata = consumer.list_topics(topic, timeout=REQUEST_TIMEOUT_S).topics[topic]
    except KafkaException as exc:
        raise translate(exc, f"describe topic {topic}") from exc
    if metadata.error is not None:
        raise KafkaUnavailable(
            f"topic {topic}: {metadata.error.str()}; any trailhouse command that runs a stage creates it"
        )
    return sorted(metadata.partitions)


def read_to_end(
    settings: Settings, bootstrap: str, topic: str, *, timeout_s: float = 30.0
) -> list[tuple[bytes, bytes | None]]:
    """Every (key, value) of `topic`, in order per partition, up to its end at the time of the call."""
    messages, _ = _scan_to_end(settings, bootstrap, topic, from_last_batch=False, timeout_s=timeout_s)
    return [(key, value) for _, key, value in messages]


def read_partitions_to_end(
    settings: Settings, bootstrap: str, topic: str, *, timeout_s: float = 30.0
) -> list[tuple[int, bytes, bytes | None]]:
    """Like `read_to_end`, with each message's partition."""
    messages, _ = _scan_to_end(settings, bootstrap, topic, from_last_batch=False, timeout_s=timeout_s)
    return messages


def end_offsets(settings: Settings, bootstrap: str, topic: str, *, timeout_s: float = 30.0) -> dict[int, int]:
    """The offset the next message of each partition will get."""
    _, ends = _scan_to_end(settings, bootstrap, topic, from_last_batch=True, timeout_s=timeout_s)
    return ends


def _scan_to_end(
    settings: Settings, bootstrap: str, topic: str, *, from_last_batch: bool, timeout_s: float
) -> tuple[list[tuple[int, bytes, bytes | None]], dict[int, int]]:
    """Read each partition until the fetch reports its end; return the messages read and each end offset.

    Ends come from the fetch, not from ListOffsets: some brokers (Tansu 0.6) answer ListOffsets(latest) with the
    last batch's base offset + 1, too low when that batch holds several messages. `from_last_batch` starts at
    that answer - 1, so only the last batch is read on such brokers and one message on the others.
    """
    consumer = Consumer(
        client_options(settings, bootstrap)
        | {
            "group.id": "trailhouse-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 50,
        }
    )
    try:
        partitions = partitions_of(consumer, topic)
        starts = dict.fromkeys(partitions, 0)
        if from_last_batch:
            for p in partitions:
                low, listed = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=REQUEST_TIMEOUT_S)
                starts[p] = max(low, listed - 1)
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in partitions])
        messages: list[tuple[int, bytes, bytes | None]] = []
        ends: dict[int, int] = {}
        deadline = time.monotonic() + timeout_s
        while len(ends) < len(partitions):
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"reading {topic} to its end took over {timeout_s:.0f}s; is the broker healthy?")
            for msg in consumer.consume(500, timeout=0.5):
                error = msg.error()
                if error is None:
                    messages.append((msg.partition(), msg.key(), msg.value()))
                elif error.code() == KafkaError._PARTITION_EOF:
                    ends[msg.partition()] = msg.offset()
                else:
                    raise translate(KafkaException(error), f"read {topic}")
        return messages, ends
    except KafkaException as exc:
        raise translate(exc, f"read {topic}") from exc
    finally:
        consumer.close()


def committed_offsets(settings: Settings, bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The offsets `group` committed on `topic` (partitions without a commit are left out)."""
    consumer = Consumer(client_options(settings, bootstrap) | {"group.id": group, "enable.auto.commit": False})
    try:
        partitions = partitions_of(consumer, topic)
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=REQUEST_TIMEOUT_S)
        return {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
    except KafkaException as exc:
        raise translate(exc, f"read committed offsets of group {group}") from exc
    finally:
        consumer.close()


def start_group_at_beginning(settings: Settings, bootstrap: str, group: str, topics: Iterable[str]) -> None:
    """Commit the earliest offset of every partition `group` has never committed on.

    A new group would start there anyway (auto.offset.reset=earliest); saying it with a commit matters for Faust,
    which seeks to the committed offsets after recovering its tables and, for a partition without one, keeps the
    position it fetched during recovery: messages fetched then were dropped, never processed. A group that already
    has members refuses the commit, which is fine: its partitions are already being consumed.
    """
    consumer = Consumer(client_options(settings, bootstrap) | {"group.id": group, "enable.auto.commit": False})
    try:
        starts = []
        for topic in topics:
            partitions = [TopicPartition(topic, p) for p in partitions_of(consumer, topic)]
            for tp in consumer.committed(partitions, timeout=REQUEST_TIMEOUT_S):
                if tp.offset < 0:
                    low, _ = consumer.get_watermark_offsets(tp, timeout=REQUEST_TIMEOUT_S)
                    starts.append(TopicPartition(topic, tp.partition, low))
        if starts:
            consumer.commit(offsets=starts, asynchronous=False)
    except KafkaException as exc:
        log.debug("group %s not initialised (%s); it is already consuming", group, exc)
    finally:
        consumer.close()


def is_drained(committed: Mapping[int, int], ends: Mapping[int, int]) -> bool:
    """True when a group has committed at least up to `ends` on every partition that holds messages."""
    return all(committed.get(p, 0) >= end for p, end in ends.items() if end > 0)


class CompactedTable:
    """A compacted topic read as a table: key -> latest Avro value, a None value (tombstone) deletes the key.

    Every read goes to the topic, so what another process wrote is seen at once; these tables are small
    (one entry per source).
    """

    def __init__(self, settings: Settings, bootstrap: str, topic: str, codec: Codec) -> None:
        self._settings = settings
        self._bootstrap = bootstrap
        self._topic = topic
        self._codec = codec

    def read(self) -> dict[str, dict[str, Any]]:
        table: dict[str, dict[str, Any]] = {}
        for key, value in read_to_end(self._settings, self._bootstrap, self._topic):
            name = key.decode()
            if value is None:
                table.pop(name, None)
            else:
                table[name] = self._codec.decode(value)
        return table

    def write(self, entries: Mapping[str, Mapping[str, Any] | None]) -> None:
        """Write entries (None deletes) and return once Kafka acknowledged all of them."""
        producer = Producer(producer_options(self._settings, self._bootstrap))
        failures: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                failures.append(err.str())

        try:
            for key, value in entries.items():
                encoded = None if value is None else self._codec.encode(value)
                producer.produce(self._topic, key=key.encode(), value=encoded, on_delivery=on_delivery)
            remaining = producer.flush(REQUEST_TIMEOUT_S)
        except KafkaException as exc:
            raise translate(exc, f"write to {self._topic}") from exc
        if failures or remaining:
            reason = failures[0] if failures else f"{remaining} message(s) unacknowledged"
            raise KafkaUnavailable(f"could not write to {self._topic}: {reason}")
