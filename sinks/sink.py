"""The sink stage: accumulate per partition -> write to ClickHouse -> commit offsets.

Guarantees:
- an offset is committed only after the rows up to it are in ClickHouse (at-least-once);
- each batch's insert carries a token made of (topic, partition, first offset, last offset), so the same batch
  inserted again after a crash is dropped by ClickHouse, and the table's ReplacingMergeTree collapses any other
  duplicate of an event id;
- a message that cannot be decoded, or a row ClickHouse refuses, goes to the dead-letter topic (found by
  splitting a refused batch in halves), never into a retry loop; a ClickHouse outage is retried with backoff
  while the consumer stays in its group (partitions paused);
- on revocation and on stop, pending batches are written and committed before the partitions are let go.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from schemas import Codec, UndecodableMessage
from schemas.records import dead_letter
from sinks.clickhouse import ClickHouseRejected, Client, insert
from sinks.tables import TableSpec
from trailhouse.config import Settings
from trailhouse.errors import ClickHouseUnavailable, KafkaUnavailable
from trailhouse.kafka import consumer_options, producer_options, translate

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


@dataclass
class PartitionBatch:
    topic: str
    partition: int
    first_offset: int
    last_offset: int = -1
    records: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


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
        self._tables = tables
        self._on_write = on_write
        self._consumer = Consumer(consumer_options(settings, bootstrap, settings.sink_group))
        self._dead_letters = Producer(producer_options(settings, bootstrap))
        self._dead_codec = Codec.of("DeadLetter")
        self._batches: dict[tuple[str, int], PartitionBatch] = {}
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        self._consumer.subscribe(list(self._tables), on_revoke=self._on_revoke)
        try:
            while not self._stopping.is_set():
                for message in self._consumer.consume(num_messages=5000, timeout=0.2):
                    self._add(message)
                self._flush(lambda batch: self._is_due(batch))
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
        batch = self._batches.get((topic, partition))
        if batch is None:
            batch = self._batches[(topic, partition)] = PartitionBatch(topic, partition, first_offset=offset)
        batch.last_offset = offset
        spec = self._tables[topic]
        try:
            batch.records.append(spec.codec.decode(message.value() or b""))
        except UndecodableMessage as exc:
            self._dead_letter(
                message.key(), str(exc), "undecodable_message", f"{topic}/{partition}/{offset}", message.value() or b""
            )

    def _is_due(self, batch: PartitionBatch) -> bool:
        return (
            len(batch.records) >= self._settings.sink_batch_events
            or time.monotonic() - batch.started >= self._settings.sink_batch_seconds
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._flush(lambda batch: (batch.topic, batch.partition) in revoked)

    def _flush(self, selected: Callable[[PartitionBatch], bool]) -> None:
        for key, batch in list(self._batches.items()):
            if not selected(batch):
                continue
            self._write_with_retry(batch)
            self._deliver_dead_letters()
            self._commit(batch)
            del self._batches[key]
            if self._on_write is not None:
                self._on_write(batch.topic, len(batch.records))

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
                    self._write(
                        batch,
                        batch.records,
                        f"{batch.topic}:{batch.partition}:{batch.first_offset}:{batch.last_offset}",
                    )
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

    def _write(self, batch: PartitionBatch, records: list[dict[str, Any]], token: str) -> None:
        """Insert records; on a refusal, split to find the rows ClickHouse rejects and dead-letter them."""
        if not records:
            return
        spec = self._tables[batch.topic]
        try:
            insert(
                self._client,
                f"{self._settings.clickhouse_database}.{spec.table}",
                spec.columns,
                spec.to_columns(records),
                dedup_token=token,
            )
        except ClickHouseRejected as exc:
            if len(records) == 1:
                record = records[0]
                self._dead_letter(
                    (record.get("source_id") or "").encode(),
                    str(exc),
                    "rejected_by_clickhouse",
                    f"{batch.topic}/{batch.partition}/{batch.first_offset}-{batch.last_offset}",
                    spec.codec.encode(record),
                )
                return
            middle = len(records) // 2
            self._write(batch, records[:middle], f"{token}:a")
            self._write(batch, records[middle:], f"{token}:b")

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
