"""Publishing a log file's chunks, dead letters and checkpoints with one Kafka producer.

Guarantee: `flush` returns only once Kafka acknowledged everything produced before it, and raises if anything
was refused; the poller writes a checkpoint only after a flush that covers every file the checkpoint counts, so a
crash re-publishes files (at-least-once) and never skips one.

Memory: the Kafka client copies every message into its queue and frees it once Kafka acknowledged it. That queue
holds at most `poll_queue_bytes` (librdkafka's own default is 1 GiB); a publisher that gets ahead of the broker
waits in `_produce` for acknowledgements, so what it holds does not grow with the files' sizes or their number.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from schemas import Codec
from schemas.records import dead_letter
from trailhouse.config import Settings
from trailhouse.errors import KafkaUnavailable
from trailhouse.kafka import producer_options, translate

FLUSH_TIMEOUT_S = 60.0  # also how long a message waits for room in a full queue


@dataclass(frozen=True)
class FileRef:
    """Where a log file came from, as carried by every message about it."""

    source_id: str
    bucket: str
    key: str
    etag: str
    account: str
    region: str

    @property
    def location(self) -> str:
        return f"{self.bucket.rstrip('/')}/{self.key}"


class RawPublisher:
    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self._settings = settings
        queue_kbytes = -(-settings.poll_queue_bytes // 1024)
        self._producer = Producer(producer_options(settings, bootstrap) | {"queue.buffering.max.kbytes": queue_kbytes})
        self._raw = Codec.of("RawBatch")
        self._dead = Codec.of("DeadLetter")
        self._checkpoint = Codec.of("Checkpoint")
        self._insight = Codec.of("Insight")
        self._failures: list[str] = []
        self.queued_bytes = 0  # produced since the last flush

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self._failures.append(err.str())

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        """Queue one message; when the queue is full (`poll_queue_bytes`), wait for acknowledgements to free
        room, up to FLUSH_TIMEOUT_S."""
        self.queued_bytes += len(value)
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while True:
            try:
                self._producer.produce(topic, key=key.encode(), value=value, on_delivery=self._on_delivery)
                break
            except BufferError:
                if time.monotonic() > deadline:
                    raise KafkaUnavailable(
                        f"produce to {topic}: Kafka acknowledged too little within {FLUSH_TIMEOUT_S:.0f}s to free "
                        f"room in the producer's queue (poll_queue_bytes={self._settings.poll_queue_bytes})"
                    ) from None
                self._producer.poll(1.0)  # returns as soon as an acknowledgement has freed a message
            except KafkaException as exc:
                raise translate(exc, f"produce to {topic}") from exc
        self._producer.poll(0)

    def insight(self, record: dict[str, Any]) -> None:
        """Queue an `Insight` record (schemas.records.insight) on the insights topic, keyed by its source id."""
        self._produce(self._settings.topic_insights, record["source_id"], self._insight.encode(record))

    def publish_file(self, ref: FileRef, chunks: Sequence[list[str]], ingest_time: datetime) -> None:
        for index, records in enumerate(chunks):
            value = self._raw.encode(
                {
                    "source_id": ref.source_id,
                    "bucket": ref.bucket,
                    "object_key": ref.key,
                    "account": ref.account,
                    "region": ref.region,
                    "etag": ref.etag,
                    "chunk_index": index,
                    "chunk_count": len(chunks),
                    "ingest_time": ingest_time,
                    "records": records,
                }
            )
            self._produce(self._settings.topic_raw, ref.source_id, value)

    def dead_letter(
        self,
        ref: FileRef,
        *,
        reason: str,
        kind: str,
        payload: bytes,
        when: datetime,
        location: str = "",
        payload_size: int | None = None,
    ) -> None:
        self.dead_letter_record(
            dead_letter(
                source_id=ref.source_id,
                stage="poll",
                reason=reason,
                kind=kind,
                location=location or ref.location,
                payload=payload,
                when=when,
                payload_size=payload_size,
            )
        )

    def dead_letter_record(self, record: dict[str, Any]) -> None:
        """Queue a `DeadLetter` record (schemas.records.dead_letter); keyed by its source id."""
        self._produce(self._settings.topic_dlq, record["source_id"], self._dead.encode(record))

    def checkpoint(self, record: dict[str, Any]) -> None:
        """Queue a checkpoint; it is delivered with the next flush (the checkpoint topic is compacted)."""
        self._produce(self._settings.topic_checkpoints, record["source_id"], self._checkpoint.encode(record))

    def flush(self) -> None:
        """Wait until Kafka acknowledged everything produced so far; raise if anything was refused."""
        self.queued_bytes = 0
        try:
            remaining = self._producer.flush(FLUSH_TIMEOUT_S)
        except KafkaException as exc:
            raise translate(exc, "deliver messages") from exc
        if self._failures or remaining:
            reason = self._failures[0] if self._failures else f"{remaining} message(s) unacknowledged"
            self._failures.clear()
            raise KafkaUnavailable(f"Kafka did not acknowledge every message: {reason}")
