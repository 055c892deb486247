"""SQS mode (`trailhouse poll --sqs-queue URL`): files announced by S3 event notifications instead of listings.

Each receive takes up to 10 messages (hidden from other pollers for `sqs_visibility_timeout`), downloads the files
they name with the source's credentials, publishes them as the listing poller does (producers/files.py), waits
for Kafka to acknowledge everything, and only then deletes the messages. A message whose file could not be read
(access denied, throttling) is left in the queue: it reappears after the visibility timeout and is tried again,
so a source recovers by itself once access is granted (the queue's redrive policy decides when to give up). While
files are in flight, the messages' visibility is extended, so a big file is never handed to a second poller.
Several pollers may share a queue: SQS gives each message to one of them at a time.

What is announced but is not collected is deleted with a count: digest files (kept apart: not events), objects
outside the CloudTrail layout, files of sources that are not registered (the registry is read again first, so a
source registered a moment ago is not missed; `trailhouse poll --since` fetches what was skipped), S3 test
events. A message that is not an S3 notification goes to the dead-letter topic.

Per source touched, a checkpoint records the outcome (`last_poll_time`, `last_error`, counters) and the newest key
published, so switching the source to listing later resumes from there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from producers.checkpoints import Checkpoint, poller_name
from producers.credentials import AwsClients
from producers.files import FilePublisher, file_ref
from producers.layout import FileKind, LogKey, parse_key
from producers.notifications import ObjectRef, parse_notification
from producers.poller import Observers, PollObserver
from producers.publisher import FileRef, RawPublisher
from producers.storage import ObjectInfo, fetch_ahead, open_store
from schemas import Codec
from schemas.records import dead_letter
from trailhouse.config import Settings
from trailhouse.errors import SourceUnavailable, SourceUnreadable, TransientError
from trailhouse.kafka import CompactedTable, ensure_topics
from trailhouse.sources import Source, source_id

log = logging.getLogger(__name__)

REFRESH_EVERY_S = 30.0  # registry and checkpoints are read again this often (sources added live)
REFRESH_UNKNOWN_S = 5.0  # ... and sooner when a notification names a source not known yet (just registered)


@dataclass
class SqsReport:
    messages: int = 0
    deleted: int = 0
    files: int = 0
    records: int = 0
    skipped: int = 0
    digests: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # source id -> why its files wait in the queue


@dataclass
class _Wanted:
    message: int  # index in the batch
    source: Source
    kind: FileKind
    ref: ObjectRef


class SqsPoller:
    """Long-running stage: `run()` receives until `stop()`; `drain()` until the queue is empty."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        clients: AwsClients,
        queue_url: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        observer: PollObserver | None = None,
        count: Callable[[str, int], None] = lambda outcome, n: None,
    ) -> None:
        """`count(outcome, n)`: n messages handled with `outcome` (done, skipped, unreadable, retry), for metrics."""
        self._settings = settings
        self._count = count
        self._bootstrap = bootstrap
        self._clients = clients
        self._queue = queue_url
        self._sqs = clients.sqs(queue_url)
        self._clock = clock
        self._observer: PollObserver = observer or Observers()
        self._stopping = threading.Event()
        self._registry = CompactedTable(settings, bootstrap, settings.topic_registry, Codec.of("SourceConfig"))
        self._checkpoint_table = CompactedTable(settings, bootstrap, settings.topic_checkpoints, Codec.of("Checkpoint"))
        self._sources: dict[str, Source] = {}
        self._checkpoints: dict[str, Checkpoint] = {}
        self._refreshed = -REFRESH_EVERY_S
        self._publisher: RawPublisher | None = None
        self._files = FilePublisher(settings, lambda: self.publisher, clock)

    @property
    def publisher(self) -> RawPublisher:
        if self._publisher is None:
            ensure_topics(self._settings, self._bootstrap)
            self._publisher = RawPublisher(self._settings, self._bootstrap)
        return self._publisher

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.receive_once(self._settings.sqs_wait)
            except TransientError as exc:
                log.warning("SQS poll failed, retrying in 5s: %s", exc)
                self._stopping.wait(5.0)

    def drain(self, wait: float = 1.0) -> SqsReport:
        """Receive until a receive finds no message (`poll --once` in SQS mode)."""
        total = SqsReport()
        while not self._stopping.is_set():
            report = self.receive_once(wait)
            if not report.messages:
                break
            for name in ("messages", "deleted", "files", "records", "skipped", "digests"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            total.errors.update(report.errors)
        return total

    def receive_once(self, wait: float) -> SqsReport:
        """One receive of up to 10 notifications, handled as the module doc says."""
        messages = self._call(
            "receive_message",
            QueueUrl=self._queue,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=int(wait),
            VisibilityTimeout=int(self._settings.sqs_visibility_timeout),
        ).get("Messages", [])
        report = SqsReport(messages=len(messages))
        if not messages:
            return report
        self._refresh()
        self._observer.poll_started(len(self._sources))
        keep: set[int] = set()  # messages left in the queue, to be received again
        with _VisibilityKeeper(self, [m["ReceiptHandle"] for m in messages]):
            wanted = self._route(messages, report)
            by_source: dict[str, list[_Wanted]] = defaultdict(list)
            for item in wanted:
                by_source[item.source.source_id].append(item)
            for sid, items in by_source.items():
                failed = self._publish_source(items, report)
                if failed is not None:
                    report.errors[sid] = failed
                    keep.update(item.message for item in items)
            self.publisher.flush()  # every file of the messages deleted below is acknowledged
            for sid in by_source:
                self.publisher.checkpoint(self._checkpoints[sid].to_record())
            self.publisher.flush()
        done = [m for i, m in enumerate(messages) if i not in keep]
        self._delete(done)
        report.deleted = len(done)
        self._count("done", len(done) - report.skipped)
        self._count("retry", len(keep))
        return report

    # --- routing ----------------------------------------------------------------------------------------------

    def _route(self, messages: list[dict[str, Any]], report: SqsReport) -> list[_Wanted]:
        """The files to collect from each message; what is not to be collected is counted and logged."""
        wanted: list[_Wanted] = []
        for index, message in enumerate(messages):
            notification = parse_notification(message.get("Body", ""))
            if notification.problem is not None:
                self._dead_letter(message, notification.problem)
                report.skipped += 1
                self._count("unreadable", 1)
                continue
            collected = 0
            for ref in notification.objects:
                parsed = parse_key(ref.key)
                reason = self._skip_reason(ref, parsed)
                if reason is not None:
                    report.digests += parsed is not None and parsed.kind is FileKind.DIGEST
                    log.info("s3://%s/%s: %s", ref.bucket, ref.key, reason)
                    continue
                assert parsed is not None
                wanted.append(_Wanted(index, self._sources[source_id(parsed.account, parsed.region)], parsed.kind, ref))
                collected += 1
            if not collected:
                report.skipped += 1
                self._count("skipped", 1)
        return wanted

    def _skip_reason(self, ref: ObjectRef, parsed: LogKey | None) -> str | None:
        if parsed is None:
            return "not a CloudTrail file (outside the AWSLogs/<account>/CloudTrail layout); skipped"
        if parsed.kind is FileKind.DIGEST:
            return "digest file: kept apart, not published as events"
        source = self._sources.get(source_id(parsed.account, parsed.region))
        if source is None and time.monotonic() - self._refreshed >= REFRESH_UNKNOWN_S:
            self._refresh(force=True)
            source = self._sources.get(source_id(parsed.account, parsed.region))
        if source is None:
            return (
                f"no registered source for account {parsed.account} in {parsed.region}; skipped (register it, then "
                "`trailhouse poll --since` collects what was skipped)"
            )
        if (source.bucket, source.prefix, source.org_id) != (f"s3://{ref.bucket}", parsed.prefix, parsed.org_id):
            return f"not where {source.source_id} is registered ({source.bucket}, prefix {source.prefix!r}); skipped"
        return None

    # --- publishing -------------------------------------------------------------------------------------------

    def _publish_source(self, items: list[_Wanted], report: SqsReport) -> str | None:
        """Publish one source's announced files; the error, in words, that stopped them, if any."""
        source = items[0].source
        checkpoint = replace(
            self._checkpoints.get(source.source_id) or Checkpoint(source.source_id),
            last_poll_time=self._clock(),
            poller=poller_name(),
        )
        lookback = timedelta(seconds=self._settings.poll_lookback)
        error = None
        try:
            store = open_store(source.bucket, lambda: self._clients.s3(source))
            objects = [ObjectInfo(item.ref.key, item.ref.size or 0, item.ref.etag) for item in items]
            settings = self._settings
            fetched = fetch_ahead(store, objects, settings.poll_download_concurrency, settings.poll_spool_bytes)
            for item, (obj, body) in zip(items, fetched, strict=False):
                size = obj.size or _length(body)
                ref: FileRef = file_ref(source, obj.key, obj.etag)
                outcome = self._files.publish(item.kind, body, ref, size)
                checkpoint = checkpoint.published(
                    item.kind,
                    obj.key,
                    records=outcome.records,
                    size=size,
                    lookback=lookback,
                    dead_letters=outcome.dead_letters,
                    dead=outcome.reason,
                )
                report.files += 1
                report.records += outcome.records
                self._observer.file_published(source.source_id, outcome.records, outcome.dead_letters, size)
        except (SourceUnreadable, SourceUnavailable) as exc:
            error = str(exc)
            log.error("%s: %s; its notifications stay in the queue", source.source_id, exc)
        self._checkpoints[source.source_id] = replace(checkpoint, last_error=error)
        self._observer.source_polled(source.source_id, error)
        return error

    def _dead_letter(self, message: dict[str, Any], problem: str) -> None:
        log.warning("SQS message %s: %s -> dead-letter topic", message.get("MessageId"), problem)
        value = dead_letter(
            source_id="",
            stage="poll",
            reason=f"{problem}; check what publishes to the queue",
            kind="not_a_notification",
            location=f"{self._queue}#{message.get('MessageId', '')}",
            payload=message.get("Body", "").encode(),
            when=self._clock(),
        )
        self.publisher.dead_letter_record(value)

    # --- SQS and registry calls -------------------------------------------------------------------------------

    def _refresh(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._refreshed < REFRESH_EVERY_S:
            return
        self._sources = {k: Source.from_record(v) for k, v in self._registry.read().items()}
        self._checkpoints = {k: Checkpoint.from_record(v) for k, v in self._checkpoint_table.read().items()}
        self._refreshed = time.monotonic()

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages[start:][:10])]
            if entries:
                failed = self._call("delete_message_batch", QueueUrl=self._queue, Entries=entries).get("Failed", [])
                for failure in failed:
                    log.warning("SQS refused to delete a message (%s); it will be read again", failure.get("Message"))

    def extend(self, receipts: list[str]) -> None:
        """Hide the messages for another visibility timeout."""
        timeout = int(self._settings.sqs_visibility_timeout)
        for start in range(0, len(receipts), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": timeout}
                for i, r in enumerate(receipts[start:][:10])
            ]
            self._call("change_message_visibility_batch", QueueUrl=self._queue, Entries=entries)

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            return getattr(self._sqs, operation)(**params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "AccessDenied"):
                raise SourceUnreadable(
                    f"SQS queue {self._queue}: {code}; check the URL and that the collector may "
                    "sqs:ReceiveMessage, sqs:DeleteMessage and sqs:ChangeMessageVisibility on it"
                ) from exc
            raise SourceUnavailable(f"SQS queue {self._queue}: {operation} failed ({code})", retry_after=5.0) from exc
        except BotoCoreError as exc:
            raise SourceUnavailable(f"SQS queue {self._queue}: {operation} failed ({exc})", retry_after=5.0) from exc


class _VisibilityKeeper:
    """While files of a batch are in flight, extend the messages' visibility every half timeout."""

    def __init__(self, poller: SqsPoller, receipts: list[str]) -> None:
        self._poller = poller
        self._receipts = receipts
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqs-visibility", daemon=True)

    def __enter__(self) -> _VisibilityKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        every = max(0.5, self._poller._settings.sqs_visibility_timeout / 2)
        while not self._done.wait(every):
            try:
                self._poller.extend(self._receipts)
                log.debug("extended the visibility of %d SQS message(s) in flight", len(self._receipts))
            except Exception as exc:  # never break the batch; the worst case is a second delivery
                log.warning("could not extend the visibility of SQS messages in flight: %s", exc)


def _length(body: Any) -> int:
    position = body.tell()
    size = body.seek(0, 2)
    body.seek(position)
    return size
