"""The poller stage: list the sources' buckets, publish new log files to `cloudtrail.raw`, checkpoint.

Per source, two lanes are listed in key order (= delivery order): the log files (`CloudTrail/`) and the Insights
files AWS delivers (`CloudTrail-Insight/`, published as `Insight`s with aws_made=true to `cloudtrail.insights`). Digest
files (`CloudTrail-Digest/`) live under their own prefix and are never read as events. Each listing starts a
look-back window before the checkpoint, so late files are caught, and publishes only what the checkpoint does not
already cover (producers/checkpoints.py). Files are downloaded concurrently and read as streams (bounded memory),
split into chunks of their original records and published; a checkpoint covers only files whose chunks Kafka has
all acknowledged, so a crash re-publishes (at-least-once) and never skips.

A file that cannot be read as CloudTrail goes to `cloudtrail.dlq` and the checkpoint moves past it, counting it in
`dead_letters`. Transient S3 errors are retried with backoff; a source that cannot be read (missing bucket, access
denied) keeps its checkpoint and carries the reason in `last_error` (the workers show it as ERROR) until a later
poll succeeds, while the other sources go on.

`poll_once()` polls every registered source (`poll --once`, `run --once`); `run()` polls, every `poll_interval`,
the sources this poller owns in the pollers' consumer group (producers/sharing.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from producers.checkpoints import Bounds, Checkpoint, is_new, listing_start, past_until, poller_name
from producers.credentials import AwsClients
from producers.files import FilePublisher, file_ref
from producers.layout import FileKind, delivered_at, parse_key, region_prefix
from producers.publisher import RawPublisher
from producers.sharing import SharedSources
from producers.storage import ObjectStore, fetch_ahead, newest_key, open_store
from schemas import Codec
from trailhouse.config import Settings
from trailhouse.errors import SourceUnavailable, SourceUnreadable, TransientError
from trailhouse.kafka import CompactedTable, ensure_topics
from trailhouse.sources import Source

log = logging.getLogger(__name__)

# A window of files is published before waiting for Kafka's acknowledgement and checkpointing its last file:
# waiting per file would cost a round trip per file (most files hold a few hundred records or fewer).
FLUSH_EVERY_FILES = 200
FLUSH_EVERY_BYTES = 32 * 1024 * 1024
TRANSIENT_ATTEMPTS = 3  # polls of a source within one cycle when S3 throttles or fails transiently
PROBE_EVERY_S = 600.0  # how often the newest key of a source that is behind is looked up (for lag and progress)
BEHIND = timedelta(hours=1)


@dataclass
class SourceReport:
    source_id: str
    files: int = 0
    records: int = 0
    bytes: int = 0
    dead_letters: int = 0
    insights: int = 0
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
    def bytes(self) -> int:
        return sum(s.bytes for s in self.sources)

    @property
    def failed(self) -> list[SourceReport]:
        return [s for s in self.sources if s.error]


class PollObserver(Protocol):
    """What the poller reports as it goes (metrics and health in trailhouse/metrics.py, the backfill progress
    bar); every call is cheap and made from the poller's thread."""

    def poll_started(self, sources: int) -> None: ...
    def file_published(self, source_id: str, records: int, dead_letters: int, size: int) -> None: ...
    def position(self, source_id: str, checkpoint: datetime | None, newest: datetime | None) -> None:
        """Delivery time of the last file checkpointed and of the newest file seen in the bucket (lag)."""
        ...

    def source_polled(self, source_id: str, error: str | None) -> None: ...


class Observers:
    """Several observers as one."""

    def __init__(self, *observers: PollObserver | None) -> None:
        self._observers = [o for o in observers if o is not None]

    def poll_started(self, sources: int) -> None:
        for o in self._observers:
            o.poll_started(sources)

    def file_published(self, source_id: str, records: int, dead_letters: int, size: int) -> None:
        for o in self._observers:
            o.file_published(source_id, records, dead_letters, size)

    def position(self, source_id: str, checkpoint: datetime | None, newest: datetime | None) -> None:
        for o in self._observers:
            o.position(source_id, checkpoint, newest)

    def source_polled(self, source_id: str, error: str | None) -> None:
        for o in self._observers:
            o.source_polled(source_id, error)


class Poller:
    """Long-running stage: `run()` polls this poller's share of the sources until `stop()`; `poll_once()` polls
    every registered source one time."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        clients: AwsClients,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        observer: PollObserver | None = None,
        bounds: Bounds | None = None,
    ) -> None:
        self._settings = settings
        self._observer: PollObserver = observer or Observers()
        self._bootstrap = bootstrap
        self._clients = clients
        self._clock = clock
        self._bounds = bounds or Bounds()
        self._lookback = timedelta(seconds=settings.poll_lookback)
        self._stopping = threading.Event()
        self._registry = CompactedTable(settings, bootstrap, settings.topic_registry, Codec.of("SourceConfig"))
        self._checkpoint_table = CompactedTable(settings, bootstrap, settings.topic_checkpoints, Codec.of("Checkpoint"))
        self._publisher: RawPublisher | None = None
        self._files = FilePublisher(settings, lambda: self.publisher, clock)
        self._probes: dict[str, tuple[float, str | None]] = {}  # source id -> (when, newest key) of the last probe
        self.share: SharedSources | None = None

    def stop(self) -> None:
        """Finish the file in flight, checkpoint it, and return from `run()`."""
        self._stopping.set()

    def run(self) -> None:
        """Poll this poller's share of the sources every `poll_interval` until `stop()`; leave the group then."""
        self.share = SharedSources(self._settings, self._bootstrap).start()
        try:
            loaded, checkpoints = -1, {}
            while not self._stopping.is_set():
                started = time.monotonic()
                try:
                    sources = self.share.sources()
                    self._observer.poll_started(len(sources))
                    report = PollReport()
                    for source in sources:
                        if self._stopping.is_set() or not self.share.begin(source.source_id):
                            continue
                        try:
                            if loaded != self.share.generation:  # sources moved: others may have advanced them
                                loaded, checkpoints = self.share.generation, self._read_checkpoints()
                            checkpoint = checkpoints.get(source.source_id) or Checkpoint(source.source_id)
                            polled, checkpoints[source.source_id] = self._poll_source(
                                source, checkpoint, lambda sid=source.source_id: self.share.owns(sid)
                            )
                            report.sources.append(polled)
                        finally:
                            self.share.end()
                    if report.files:
                        log.info("poll: %d new file(s), %d record(s)", report.files, report.records)
                except TransientError as exc:
                    loaded = -1
                    log.warning("poll failed, retrying in %.0fs: %s", self._settings.poll_interval, exc)
                self._stopping.wait(max(0.0, self._settings.poll_interval - (time.monotonic() - started)))
        finally:
            self.share.close()

    def poll_once(self) -> PollReport:
        """Poll every registered source once, up to the files present now (or `bounds.until`)."""
        sources = [Source.from_record(r) for r in self._registry.read().values()]
        checkpoints = self._read_checkpoints()
        self._observer.poll_started(len(sources))
        report = PollReport()
        for source in sorted(sources, key=lambda s: s.source_id):
            if self._stopping.is_set():
                break
            checkpoint = checkpoints.get(source.source_id) or Checkpoint(source.source_id)
            polled, _ = self._poll_source(source, checkpoint, lambda: True)
            report.sources.append(polled)
        return report

    def _read_checkpoints(self) -> dict[str, Checkpoint]:
        return {k: Checkpoint.from_record(v) for k, v in self._checkpoint_table.read().items()}

    @property
    def publisher(self) -> RawPublisher:
        if self._publisher is None:
            ensure_topics(self._settings, self._bootstrap)
            self._publisher = RawPublisher(self._settings, self._bootstrap)
        return self._publisher

    # --- one source -------------------------------------------------------------------------------------------

    def _poll_source(
        self, source: Source, checkpoint: Checkpoint, owned: Callable[[], bool]
    ) -> tuple[SourceReport, Checkpoint]:
        """Publish a source's new files; checkpoint after each window of files Kafka acknowledged, and at the end
        (flushed: the next owner of the source reads it)."""
        report = SourceReport(source.source_id)
        checkpoint = replace(checkpoint, last_poll_time=self._clock(), poller=poller_name())
        keep_going = lambda: owned() and not self._stopping.is_set()  # noqa: E731
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                store = open_store(source.bucket, lambda: self._clients.s3(source))
                for kind in (FileKind.LOGS, FileKind.INSIGHT):
                    checkpoint = self._poll_lane(store, source, kind, checkpoint, report, keep_going)
                report.error = None
                break
            except SourceUnavailable as exc:
                report.error = str(exc)
                delay = exc.retry_after or float(2**attempt)
                if attempt == TRANSIENT_ATTEMPTS or not keep_going():
                    break
                log.warning("%s: %s; polling it again in %.0fs", source.source_id, exc, delay)
                self._stopping.wait(delay)
            except SourceUnreadable as exc:
                report.error = str(exc)
                break
        if report.error:
            log.error("%s: %s", source.source_id, report.error)
        checkpoint = replace(checkpoint, last_error=report.error)
        self.publisher.flush()  # every file counted in the checkpoint is acknowledged before it is written
        self.publisher.checkpoint(checkpoint.to_record())
        self.publisher.flush()
        self._observer.source_polled(source.source_id, report.error)
        if report.files:
            log.info("%s: published %d file(s), %d record(s)", source.source_id, report.files, report.records)
        return report, checkpoint

    def _poll_lane(
        self,
        store: ObjectStore,
        source: Source,
        kind: FileKind,
        checkpoint: Checkpoint,
        report: SourceReport,
        keep_going: Callable[[], bool],
    ) -> Checkpoint:
        prefix = region_prefix(source.account, source.region, prefix=source.prefix, org_id=source.org_id, kind=kind)
        start = listing_start(checkpoint, kind, prefix, self._lookback, self._bounds)
        at_start = checkpoint
        newest = self._newest(store, source, prefix, checkpoint) if kind is FileKind.LOGS else None

        def wanted() -> Any:
            nonlocal newest
            for obj in store.list(prefix, start_after=start):
                if past_until(obj.key, prefix, self._bounds):
                    return
                parsed = parse_key(obj.key)
                if parsed is None or parsed.kind is not kind:
                    continue  # a README, a folder marker, another account's key under a shared prefix
                newest = max(newest or "", obj.key)
                if is_new(at_start, kind, obj.key):
                    yield obj

        unacknowledged = 0
        settings = self._settings
        for obj, body in fetch_ahead(store, wanted(), settings.poll_download_concurrency, settings.poll_spool_bytes):
            if not keep_going():
                break
            outcome = self._files.publish(kind, body, file_ref(source, obj.key, obj.etag), obj.size)
            checkpoint = checkpoint.published(
                kind,
                obj.key,
                records=outcome.records,
                size=obj.size,
                lookback=self._lookback,
                dead_letters=outcome.dead_letters,
                dead=outcome.reason,
            )
            report.files += 1
            report.records += outcome.records
            report.bytes += obj.size
            report.dead_letters += outcome.dead_letters
            report.insights += outcome.insights
            self._observer.file_published(source.source_id, outcome.records, outcome.dead_letters, obj.size)
            if kind is FileKind.LOGS:
                self._observer.position(source.source_id, delivered_at(checkpoint.last_key), _time_of(newest))
            unacknowledged += 1
            if unacknowledged >= FLUSH_EVERY_FILES or self.publisher.queued_bytes >= FLUSH_EVERY_BYTES:
                self.publisher.flush()
                self.publisher.checkpoint(checkpoint.to_record())
                unacknowledged = 0
        if kind is FileKind.LOGS:
            self._observer.position(source.source_id, delivered_at(checkpoint.last_key), _time_of(newest))
        return checkpoint

    def _newest(self, store: ObjectStore, source: Source, prefix: str, checkpoint: Checkpoint) -> str | None:
        """The newest log file key of a source that is behind (for lag and progress), looked up at most every
        PROBE_EVERY_S; None when the source is caught up (the listing itself then says what is newest)."""
        last = delivered_at(checkpoint.last_key) if checkpoint.last_key else None
        if last is not None and last >= self._clock() - BEHIND:
            return None
        probed_at, key = self._probes.get(source.source_id, (-PROBE_EVERY_S, None))
        if time.monotonic() - probed_at >= PROBE_EVERY_S:
            key = newest_key(store, prefix)
            self._probes[source.source_id] = (time.monotonic(), key)
        return key


def _time_of(key: str | None) -> datetime | None:
    return delivered_at(key) if key else None
