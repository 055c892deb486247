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


@dataclass
class BatchResult:
    source_id: str
    chunk_index: int = 0
    ingest_time_ms: int = 0
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
    result = BatchResult(source_id=ctx.source_id, chunk_index=batch["chunk_index"], ingest_time_ms=ctx.ingest_time_ms)
    file_location = f"{batch['bucket'].rstrip('/')}/{batch['object_key']}"
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
                    location=f"{file_location}#chunk{batch['chunk_index']}/record{index}",
                    payload=text.encode(),
                    when=now,
                )
            )
    return result
