"""The poller stage: list every registered source, publish new log files to `cloudtrail.raw`, checkpoint.

Per source, files are listed in key order after the checkpoint (`StartAfter`), read, split into chunks of their
original records and published; a checkpoint covers only files whose chunks Kafka has all acknowledged. A file
that cannot be read as CloudTrail goes to `cloudtrail.dlq` and is checkpointed past, so one bad file never blocks
a source. A source that cannot be listed (missing bucket, access denied) keeps its checkpoint and carries the
reason in `last_error` until a later poll succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from producers.layout import FileKind, LogKey, parse_key, region_prefix
from producers.publisher import FileRef, RawPublisher
from producers.split import split_log_file
from producers.storage import fetch_ahead, open_store
from schemas import Codec
from trailhouse.config import Settings
from trailhouse.errors import BadLogFile, SourceUnavailable, SourceUnreadable, TransientError
from trailhouse.kafka import CompactedTable, ensure_topics
from trailhouse.sources import Source

log = logging.getLogger(__name__)

# A window of files is published before waiting for Kafka's acknowledgement and checkpointing its last file:
# waiting per file would cost a round trip per file (most files hold a few hundred records or fewer).
FLUSH_EVERY_FILES = 200
FLUSH_EVERY_BYTES = 32 * 1024 * 1024


@dataclass
class SourceReport:
    source_id: str
    files: int = 0
    records: int = 0
    dead_letters: int = 0
    error: str | None = None


@dataclass
class PollReport:
    sources: list[SourceReport] = field(default_factory=list)

    @property
    def files(self) -> int:
        return sum(s.files for s in self.sources)

    @property
    def records(self) -> int:
        return sum(s.records for s in self.sources)

    @property
    def failed(self) -> list[SourceReport]:
        return [s for s in self.sources if s.error]


class PollObserver(Protocol):
    """What the poller reports as it goes (metrics and health, trailhouse/metrics.py); every call is cheap."""

    def poll_started(self, sources: int) -> None: ...
    def file_published(self, source_id: str, records: int, dead_letters: int) -> None: ...
    def source_polled(self, source_id: str, error: str | None) -> None: ...


class _Unobserved:
    def poll_started(self, sources: int) -> None:
        pass

    def file_published(self, source_id: str, records: int, dead_letters: int) -> None:
        pass

    def source_polled(self, source_id: str, error: str | None) -> None:
        pass


def _log_key(key: str) -> LogKey | None:
    """The parsed key of a CloudTrail log file; None for digests, Insights files and other objects."""
    parsed = parse_key(key)
    return parsed if parsed is not None and parsed.kind is FileKind.LOGS else None


def empty_checkpoint(source_id: str) -> dict[str, Any]:
    return {
        "source_id": source_id,
        "last_key": "",
        "files": 0,
        "records": 0,
        "last_poll_time": datetime.fromtimestamp(0, UTC),
        "last_error": None,
    }


class Poller:
    """Long-running stage: `run()` polls until `stop()`; `poll_once()` polls every source one time."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        s3_client: Callable[[], Any],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        observer: PollObserver | None = None,
    ) -> None:
        self._settings = settings
        self._observer: PollObserver = observer or _Unobserved()
        self._bootstrap = bootstrap
        self._s3_client = s3_client
        self._clock = clock
        self._stopping = threading.Event()
        self._registry = CompactedTable(settings, bootstrap, settings.topic_registry, Codec.of("SourceConfig"))
        self._checkpoints = CompactedTable(settings, bootstrap, settings.topic_checkpoints, Codec.of("Checkpoint"))
        self._publisher: RawPublisher | None = None

    def stop(self) -> None:
        """Finish the file in flight, checkpoint it, and return from `run()`."""
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                report = self.poll_once()
                log.info("poll: %d new file(s), %d record(s)", report.files, report.records)
            except TransientError as exc:
                log.warning("poll failed, retrying in %.0fs: %s", self._settings.poll_interval, exc)
            self._stopping.wait(max(0.0, self._settings.poll_interval - (time.monotonic() - started)))

    def poll_once(self) -> PollReport:
        """Poll every registered source once, up to the files present now."""
        if self._publisher is None:
            ensure_topics(self._settings, self._bootstrap)
            self._publisher = RawPublisher(self._settings, self._bootstrap)
        sources = [Source.from_record(r) for r in self._registry.read().values()]
        checkpoints = self._checkpoints.read()
        self._observer.poll_started(len(sources))
        report = PollReport()
        for source in sorted(sources, key=lambda s: s.source_id):
            if self._stopping.is_set():
                break
            checkpoint = checkpoints.get(source.source_id) or empty_checkpoint(source.source_id)
            polled = self._poll_source(source, checkpoint, self._publisher)
            self._observer.source_polled(polled.source_id, polled.error)
            report.sources.append(polled)
        self._publisher.flush()
        return report

    def _poll_source(self, source: Source, checkpoint: dict[str, Any], publisher: RawPublisher) -> SourceReport:
        """Publish a source's new files; checkpoint after each window of files Kafka has acknowledged."""
        report = SourceReport(source.source_id)
        prefix = region_prefix(source.account, source.region, prefix=source.prefix, org_id=source.org_id)
        checkpoint = dict(checkpoint, last_poll_time=self._clock())
        unacknowledged = 0
        try:
            store = open_store(source.bucket, self._s3_client)
            listed = (obj for obj in store.list(prefix, start_after=checkpoint["last_key"]) if _log_key(obj.key))
            for obj, data in fetch_ahead(store, listed, self._settings.poll_download_concurrency):
                if self._stopping.is_set():
                    break
                parsed = _log_key(obj.key)
                assert parsed is not None
                ref = FileRef(source.source_id, source.bucket, obj.key, obj.etag, parsed.account, parsed.region)
                records, dead = self._publish_file(data, ref, publisher)
                report.files += 1
                report.records += records
                report.dead_letters += dead
                self._observer.file_published(source.source_id, records, dead)
                checkpoint.update(
                    last_key=obj.key, files=checkpoint["files"] + 1, records=checkpoint["records"] + records
                )
                unacknowledged += 1
                if unacknowledged >= FLUSH_EVERY_FILES or publisher.queued_bytes >= FLUSH_EVERY_BYTES:
                    publisher.flush()
                    publisher.checkpoint(checkpoint)
                    unacknowledged = 0
            checkpoint["last_error"] = None
        except (SourceUnreadable, SourceUnavailable) as exc:
            report.error = checkpoint["last_error"] = str(exc)
            log.error("%s: %s", source.source_id, exc)
        publisher.flush()  # every file counted in `checkpoint` is acknowledged before the checkpoint is written
        publisher.checkpoint(checkpoint)
        if report.files:
            log.info("%s: published %d file(s), %d record(s)", source.source_id, report.files, report.records)
        return report

    def _publish_file(self, data: bytes, ref: FileRef, publisher: RawPublisher) -> tuple[int, int]:
        """Queue one file's chunks (and dead letters) for Kafka; return (records published, dead letters)."""
        now = self._clock()
        try:
            split = split_log_file(
                data,
                max_chunk_bytes=self._settings.raw_chunk_bytes,
                max_file_bytes=self._settings.max_file_bytes,
            )
        except BadLogFile as exc:
            log.warning("%s: %s -> dead-letter topic", ref.location, exc)
            publisher.dead_letter(ref, reason=str(exc), kind=exc.kind, payload=data, when=now)
            return 0, 1
        for record in split.oversized:
            reason = (
                f"record {record.index} is {record.size} bytes, more than raw_chunk_bytes="
                f"{self._settings.raw_chunk_bytes} allows; raise raw_chunk_bytes (and the broker's message.max.bytes)"
            )
            log.warning("%s: %s -> dead-letter topic", ref.location, reason)
            publisher.dead_letter(
                ref,
                reason=reason,
                kind="record_too_large",
                payload=record.text.encode(),
                when=now,
                location=f"{ref.location}#record{record.index}",
            )
        publisher.publish_file(ref, split.chunks, now)
        return split.records, len(split.oversized)
