"""Publishing one downloaded file, whichever way it was found (listing or SQS notification):

- a log file (`CloudTrail/`): its records, cut out verbatim and chunked, to `cloudtrail.raw`; records too large
  for a message to `cloudtrail.dlq`;
- an Insights file AWS delivered (`CloudTrail-Insight/`): each record as an `Insight` with aws_made=true (its
  original JSON kept as is) to `cloudtrail.insights`, beside the insights trailhouse's own detector makes; a
  record that is not an Insights event to `cloudtrail.dlq`;
- a file that is not CloudTrail (corrupt gzip, not JSON, no `Records`, over `max_file_bytes`): one dead letter
  naming it and the reason, and nothing else of it.

Everything is queued on the publisher; the caller flushes before it checkpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import IO

import orjson

from producers.layout import FileKind, parse_key
from producers.publisher import FileRef, RawPublisher
from producers.split import iter_records, split_stream
from schemas.records import DEAD_LETTER_PAYLOAD_BYTES, insight
from trailhouse.config import Settings
from trailhouse.errors import BadLogFile
from trailhouse.sources import Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    records: int  # records published (to the raw topic, or Insights events to the insights topic)
    dead_letters: int = 0
    reason: str | None = None  # why the file's last dead letter was written, with its location
    insights: int = 0


def file_ref(source: Source, key: str, etag: str) -> FileRef:
    parsed = parse_key(key)
    if parsed is None:
        raise ValueError(f"{key} is not a CloudTrail key")
    return FileRef(source.source_id, source.bucket, key, etag, parsed.account, parsed.region)


class FilePublisher:
    def __init__(self, settings: Settings, publisher: Callable[[], RawPublisher], clock: Callable[[], datetime]):
        self._settings = settings
        self._publisher = publisher
        self._clock = clock

    def publish(self, kind: FileKind, body: IO[bytes], ref: FileRef, size: int) -> Outcome:
        if kind is FileKind.INSIGHT:
            return self._insights(body, ref, size)
        return self._log_file(body, ref, size)

    def _log_file(self, body: IO[bytes], ref: FileRef, size: int) -> Outcome:
        now = self._clock()
        settings = self._settings
        publisher = self._publisher()
        try:
            split = split_stream(
                body,
                max_chunk_bytes=settings.raw_chunk_bytes,
                max_file_bytes=settings.max_file_bytes,
                spool_bytes=settings.poll_spool_bytes,
            )
        except BadLogFile as exc:
            return self._dead_file(body, ref, size, exc)
        with split:
            reason = None
            for record in split.oversized:
                reason = (
                    f"record {record.index} is {record.size} bytes, more than raw_chunk_bytes="
                    f"{settings.raw_chunk_bytes} allows; raise raw_chunk_bytes (and the broker's message.max.bytes)"
                )
                log.warning("%s: %s -> dead-letter topic", ref.location, reason)
                publisher.dead_letter(
                    ref,
                    reason=reason,
                    kind="record_too_large",
                    payload=record.text.encode(),
                    when=now,
                    location=f"{ref.location}#record{record.index}",
                    payload_size=record.size,
                )
            publisher.publish_file(ref, split.chunks, now)
            return Outcome(split.records, len(split.oversized), f"{reason} ({ref.location})" if reason else None)

    def _insights(self, body: IO[bytes], ref: FileRef, size: int) -> Outcome:
        """Insights files are small (a few events): read whole, then published record by record."""
        try:
            texts = list(iter_records(body, max_file_bytes=self._settings.max_file_bytes))
        except BadLogFile as exc:
            return self._dead_file(body, ref, size, exc)
        publisher = self._publisher()
        published = dead = 0
        reason = None
        for index, text in enumerate(texts):
            try:
                value = insight(orjson.loads(text), ref.source_id, aws_made=True, text=text)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                reason = f"record {index} is not a CloudTrail Insights event ({_missing(exc)})"
                log.warning("%s: %s -> dead-letter topic", ref.location, reason)
                publisher.dead_letter(
                    ref,
                    reason=reason,
                    kind="not_an_insight",
                    payload=text.encode(),
                    when=self._clock(),
                    location=f"{ref.location}#record{index}",
                )
                dead += 1
                continue
            publisher.insight(value)
            published += 1
        return Outcome(published, dead, f"{reason} ({ref.location})" if reason else None, insights=published)

    def _dead_file(self, body: IO[bytes], ref: FileRef, size: int, exc: BadLogFile) -> Outcome:
        log.warning("%s: %s -> dead-letter topic", ref.location, exc)
        body.seek(0)
        self._publisher().dead_letter(
            ref,
            reason=str(exc),
            kind=exc.kind,
            payload=body.read(DEAD_LETTER_PAYLOAD_BYTES),
            when=self._clock(),
            payload_size=size,
        )
        return Outcome(0, 1, f"{exc} ({ref.location})")


def _missing(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]}"
    return str(exc) or type(exc).__name__
