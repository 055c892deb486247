"""The sink stage: accumulate per partition -> write to ClickHouse -> commit offsets. One loop for every topic.

Guarantees:
- an offset is committed only after the rows up to it are in ClickHouse (at-least-once);
- exactly-once effect: each batch's insert carries a token made of (topic, partition, first offset, last offset),
  so ClickHouse drops a batch it already has. Before its insert, the batch's range is recorded in `sink_batches`;
  a sink that restarts after a crash between insert and commit re-forms exactly that batch (same range, same
  token) from the committed offset, so the insert is dropped instead of duplicated. Any other duplicate of an
  event id is collapsed by the tables' ReplacingMergeTree, and searches never show one (sinks/search.py);
- a batch is bounded by events and age (`sink_batch_events`, `sink_batch_seconds`), and the batches of all
  partitions together by bytes (`sink_batch_bytes`: reaching it writes the largest batch), so the sink's memory
  does not grow with the partitions it holds;
- a batch goes to ClickHouse as Avro files, read by ClickHouse itself (`Codec.container`): the sink checks each
  message's header, not its body;
- a message that cannot be decoded (its header here, its body by ClickHouse), or a row ClickHouse refuses, goes to
  the dead-letter topic (found by splitting a refused batch in halves), never into a retry loop; a refusal of the
  statement itself (a missing table or column, no permission) stops the sink with the reason, since no row can fix
  it;
- a ClickHouse outage is retried with backoff while the consumer stays in its group (partitions paused);
- on revocation and on stop, pending batches are written and committed before the partitions are let go.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from schemas import Codec, UndecodableMessage
from schemas.records import dead_letter
from sinks.clickhouse import ClickHouseRejected, Client, call, insert, insert_avro, release_memory
from sinks.ddl import Layout
from sinks.tables import TableSpec
from trailhouse.config import Settings
from trailhouse.errors import ClickHouseUnavailable, KafkaUnavailable, TrailhouseError
from trailhouse.kafka import consumer_options, producer_options, translate

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
REPLAY_WAIT_S = 30.0  # how long the re-read of a crashed batch may take before its time bound applies again
_BATCH_COLUMNS = ("sink_group", "topic", "partition", "first_offset", "last_offset")


@dataclass
class PartitionBatch:
    topic: str
    partition: int
    first_offset: int
    last_offset: int = -1
    messages: list[bytes] = field(default_factory=list)  # Avro single-object values, as consumed
    size_bytes: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def token(self) -> str:
        return f"{self.topic}:{self.partition}:{self.first_offset}:{self.last_offset}"


def insert_settings(*, cluster: bool) -> dict[str, int]:
    """Settings of every sink insert.

    A retried batch that `events` skips as a duplicate still reaches its materialized view (`event_numbers`),
    which skips it in turn if it has it: an insert that failed between the two tables leaves neither short. On a
    cluster, the insert waits until the shards have the rows: only then is committing the offsets safe.
    """
    settings = {"deduplicate_blocks_in_dependent_materialized_views": 1}
    return settings | {"distributed_foreground_insert": 1} if cluster else settings


class Sink:
    """Long-running stage writing topics into ClickHouse tables; `run()` until `stop()`."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        client: Client,
        tables: dict[str, TableSpec],
        *,
        on_write: Callable[[str, int], None] | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._layout = Layout(settings.clickhouse_database, settings.cluster)
        self._insert_settings = insert_settings(cluster=settings.cluster is not None)
        self._tables = tables
        self._on_write = on_write
        self._embedded = settings.embedded_clickhouse
        # librdkafka prefetches up to 64 MiB by default, whatever the sink holds; one bound ahead keeps it busy.
        prefetch = {"queued.max.messages.kbytes": max(1024, settings.sink_batch_bytes // 1024)}
        self._consumer = Consumer(consumer_options(settings, bootstrap, settings.sink_group) | prefetch)
        self._dead_letters = Producer(producer_options(settings, bootstrap))
        self._dead_codec = Codec.of("DeadLetter")
        self._batches: dict[tuple[str, int], PartitionBatch] = {}
        self._held_bytes = 0  # message bytes of every batch in `_batches`
        self._replays: dict[tuple[str, int], tuple[int, int]] = {}
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        self._consumer.subscribe(list(self._tables), on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self._stopping.is_set():
                for message in self._consumer.consume(num_messages=5000, timeout=0.2):
                    self._add(message)
                self._flush(self._is_due)
            self._flush(lambda batch: True)
        finally:
            self._consumer.close()  # leaves the group so partitions move at once

    def _add(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                return
            raise translate(KafkaException(error), "consume")
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        key = (topic, partition)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = PartitionBatch(topic, partition, first_offset=offset)
        batch.last_offset = offset
        value = message.value() or b""
        batch.size_bytes += len(value)
        self._held_bytes += len(value)
        try:
            self._tables[topic].codec.writer_of(value)  # the header; ClickHouse reads the body (`_write`)
            batch.messages.append(value)
        except UndecodableMessage as exc:
            self._dead_letter(message.key(), str(exc), "undecodable_message", f"{topic}/{partition}/{offset}", value)
        replay = self._replays.get(key)
        if replay is not None and (replay[0] != batch.first_offset or offset >= replay[1]):
            del self._replays[key]
            if replay[0] == batch.first_offset:  # the batch a crashed sink was writing: write it exactly again
                self._flush(lambda b: b is batch)
                return
        if self._is_full(batch):
            self._flush(lambda b: b is batch)
        elif self._held_bytes >= self._settings.sink_batch_bytes:
            self._flush_largest()

    def _is_full(self, batch: PartitionBatch) -> bool:
        s = self._settings
        return len(batch.messages) >= s.sink_batch_events or batch.size_bytes >= s.sink_batch_bytes

    def _is_replaying(self, batch: PartitionBatch) -> bool:
        replay = self._replays.get((batch.topic, batch.partition))
        return replay is not None and replay[0] == batch.first_offset

    def _flush_largest(self) -> None:
        """Write the largest batch, to keep the bytes held across partitions under `sink_batch_bytes`.

        A batch re-forming a crashed one is left to reach its recorded end (cut earlier, its token would differ
        and the rows would be stored twice); it was bounded by `sink_batch_bytes` when it was first formed.
        """
        candidates = [batch for batch in self._batches.values() if not self._is_replaying(batch)]
        if candidates:
            largest = max(candidates, key=lambda batch: batch.size_bytes)
            self._flush(lambda b: b is largest)

    def _is_due(self, batch: PartitionBatch) -> bool:
        """Full, or old enough; a batch re-forming a crashed one waits for its last offset instead of its age."""
        if self._is_full(batch):
            return True
        age = time.monotonic() - batch.started
        if self._is_replaying(batch):
            return age >= max(REPLAY_WAIT_S, self._settings.sink_batch_seconds)
        return age >= self._settings.sink_batch_seconds

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Learn the batches a previous owner of these partitions was writing (see the module docstring)."""
        try:
            self._replays = self._read_batches_in_flight()
        except TrailhouseError as exc:  # only the token's help is lost: ReplacingMergeTree still collapses
            log.warning("could not read the batches in flight, a replay may insert duplicate rows: %s", exc)
            self._replays = {}

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._flush(lambda batch: (batch.topic, batch.partition) in revoked)

    def _flush(self, selected: Callable[[PartitionBatch], bool]) -> None:
        for key, batch in list(self._batches.items()):
            if not selected(batch):
                continue
            self._write_with_retry(batch)
            if self._embedded:
                release_memory(self._client)
            self._deliver_dead_letters()
            self._commit(batch)
            del self._batches[key]
            self._held_bytes -= batch.size_bytes
            if self._on_write is not None:
                self._on_write(batch.topic, len(batch.messages))

    def _commit(self, batch: PartitionBatch) -> None:
        """Commit a written batch; if Kafka refuses, the batch is read and written again later (idempotently)."""
        try:
            self._consumer.commit(
                offsets=[TopicPartition(batch.topic, batch.partition, batch.last_offset + 1)], asynchronous=False
            )
        except KafkaException as exc:
            log.warning("could not commit %s/%d: %s", batch.topic, batch.partition, translate(exc, "commit"))

    def _write_with_retry(self, batch: PartitionBatch) -> None:
        """Write a batch; keep retrying while ClickHouse is unavailable, with partitions paused meanwhile."""
        delay = 1.0
        paused: list[TopicPartition] = []
        try:
            while True:
                try:
                    self._record_batch_in_flight(batch)
                    self._write(batch, batch.messages, batch.token)
                    return
                except ClickHouseUnavailable as exc:
                    if self._stopping.is_set():
                        raise
                    log.warning("ClickHouse unavailable, retrying in %.0fs: %s", delay, exc)
                    if not paused:
                        paused = self._consumer.assignment()
                        self._consumer.pause(paused)
                    deadline = time.monotonic() + (exc.retry_after or delay)
                    while time.monotonic() < deadline and not self._stopping.is_set():
                        self._consumer.poll(0.2)  # keeps the group membership alive; paused, so no messages
                    delay = min(delay * 2, MAX_BACKOFF_S)
        finally:
            if paused:
                self._consumer.resume(paused)

    def _write(self, batch: PartitionBatch, messages: list[bytes], token: str) -> None:
        """Insert messages as one Avro file per writer schema (`Codec.container`), read by ClickHouse itself:
        decoding them in Python and sending columns took ~2.5x the CPU (NOTES.md, issue 7)."""
        codec = self._tables[batch.topic].codec
        by_writer: dict[bytes, list[bytes]] = {}
        for message in messages:
            by_writer.setdefault(codec.writer_of(message), []).append(message)
        for writer, written in by_writer.items():  # one writer, unless the batch spans a schema upgrade
            self._insert(batch, writer, written, token if len(by_writer) == 1 else f"{token}:{writer.hex()}")

    def _insert(self, batch: PartitionBatch, writer: bytes, messages: list[bytes], token: str) -> None:
        """Insert messages of one writer schema; on a refusal of rows, split to find the ones ClickHouse rejects
        and dead-letter them."""
        spec = self._tables[batch.topic]
        fields = spec.codec.fields_of(writer)
        try:
            insert_avro(
                self._client,
                self._layout.name(spec.table),
                [c for c in spec.columns if c in fields],
                spec.codec.container(messages),
                dedup_token=token,
                settings=self._insert_settings,
            )
        except ClickHouseRejected as exc:
            if not exc.about_rows:
                raise
            if len(messages) == 1:
                self._dead_letter(
                    _source_id(spec.codec, messages[0]).encode(),
                    str(exc),
                    "rejected_by_clickhouse",
                    f"{batch.topic}/{batch.partition}/{batch.first_offset}-{batch.last_offset}",
                    messages[0],
                )
                return
            middle = len(messages) // 2
            self._insert(batch, writer, messages[:middle], f"{token}:a")
            self._insert(batch, writer, messages[middle:], f"{token}:b")

    def _record_batch_in_flight(self, batch: PartitionBatch) -> None:
        row = (self._settings.sink_group, batch.topic, batch.partition, batch.first_offset, batch.last_offset)
        insert(
            self._client,
            self._layout.name("sink_batches"),
            _BATCH_COLUMNS,
            [[value] for value in row],
            settings=self._insert_settings,
        )

    def _read_batches_in_flight(self) -> dict[tuple[str, int], tuple[int, int]]:
        sql = (
            f"SELECT topic, partition, first_offset, last_offset FROM {self._layout.name('sink_batches')} FINAL "
            "WHERE sink_group = {group:String}"
        )
        rows = call(
            "read the batches in flight",
            lambda: self._client.query(sql, parameters={"group": self._settings.sink_group}).result_rows,
        )
        return {(topic, partition): (first, last) for topic, partition, first, last in rows if topic in self._tables}

    def _deliver_dead_letters(self) -> None:
        """Dead letters must be in Kafka before the offsets that produced them are committed."""
        if self._dead_letters.flush(30):
            raise KafkaUnavailable("the dead-letter topic did not acknowledge; not committing, will retry")

    def _dead_letter(self, key: bytes | None, reason: str, kind: str, location: str, payload: bytes) -> None:
        log.warning("%s: %s -> dead-letter topic", location, reason)
        source_id = (key or b"").decode(errors="replace")
        value = dead_letter(
            source_id=source_id,
            stage="sink",
            reason=reason,
            kind=kind,
            location=location,
            payload=payload,
            when=datetime.now(UTC),
        )
        self._dead_letters.produce(self._settings.topic_dlq, key=key, value=self._dead_codec.encode(value))
        self._dead_letters.poll(0)


def _source_id(codec: Codec, message: bytes) -> str:
    """The source id of a message ClickHouse refused, for its dead letter's key ("" if it cannot be read)."""
    try:
        return str(codec.decode(message).get("source_id") or "")
    except UndecodableMessage:
        return ""
