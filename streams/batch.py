"""One `cloudtrail.raw` message (a log file chunk) -> its enriched events and dead letters. Pure, no I/O.

Work is done per batch, not per event: the Faust agent calls this once per message, then sends the results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas import Codec, UndecodableMessage
from schemas.records import dead_letter
from streams.enrich import FileContext, NotARecord, enrich

_RAW = Codec.of("RawBatch")
_EVENT = Codec.of("Event")


@dataclass
class BatchResult:
    source_id: str
    chunk_index: int = 0
    ingest_time_ms: int = 0
    location: str = ""  # the chunk in its file, for dead letters: bucket/key#chunkN
    events: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)


def process_raw(value: bytes, *, location: str, now: datetime) -> BatchResult:
    """Enrich every record of an encoded `RawBatch`; what cannot be read becomes a `DeadLetter`.

    `location` names the Kafka message (topic/partition/offset) for a batch that cannot even be decoded.
    """
    try:
        batch = _RAW.decode(value)
    except UndecodableMessage as exc:
        return BatchResult(
            source_id="",
            dead_letters=[
                dead_letter(
                    source_id="",
                    stage="worker",
                    reason=str(exc),
                    kind="undecodable_message",
                    location=location,
                    payload=value,
                    when=now,
                )
            ],
        )
    ctx = FileContext(
        source_id=batch["source_id"],
        object_key=batch["object_key"],
        account=batch["account"],
        region=batch["region"],
        ingest_time_ms=int(batch["ingest_time"].timestamp() * 1000),
    )
    file_location = f"{batch['bucket'].rstrip('/')}/{batch['object_key']}"
    result = BatchResult(
        source_id=ctx.source_id,
        chunk_index=batch["chunk_index"],
        ingest_time_ms=ctx.ingest_time_ms,
        location=f"{file_location}#chunk{batch['chunk_index']}",
    )
    for index, text in enumerate(batch["records"]):
        try:
            result.events.append(enrich(text, ctx))
        except NotARecord as exc:
            result.dead_letters.append(
                dead_letter(
                    source_id=ctx.source_id,
                    stage="worker",
                    reason=f"record {index} of chunk {batch['chunk_index']}: {exc}",
                    kind=exc.kind,
                    location=f"{result.location}/record{index}",
                    payload=text.encode(),
                    when=now,
                )
            )
    return result


def encode_events(
    events: list[dict[str, Any]], *, location: str, max_bytes: int, now: datetime
) -> tuple[list[bytes], list[dict[str, Any]]]:
    """The events (of the chunk at `location`) as `Event` messages, and a dead letter with the record for each one
    over `max_bytes`. The worker's messages are bounded like the poller's (raw_chunk_bytes, under the broker's
    message.max.bytes): a Kafka broker refuses a larger batch unless compression brings it under, and the refusal
    would fail the worker's whole batch. An event outgrows its record by the fields copied from it."""
    encoded, dead = [], []
    for event in events:
        message = _EVENT.encode(event)
        if len(message) <= max_bytes:
            encoded.append(message)
            continue
        dead.append(
            dead_letter(
                source_id=event["source_id"],
                stage="worker",
                reason=(
                    f"event {event['event_id']} is {len(message)} bytes as a message, more than the worker may send "
                    f"({max_bytes}, from raw_chunk_bytes); to ingest it, raise raw_chunk_bytes and the broker's "
                    "message.max.bytes, then collect its file again (trailhouse poll --since)"
                ),
                kind="event_too_large",
                location=f"{location}/event={event['event_id']}",
                payload=event["record"].encode(),
                when=now,
            )
        )
    return encoded, dead
