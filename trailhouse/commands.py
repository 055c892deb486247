"""What each `trailhouse` command does; cli.py parses arguments and calls these with validated values."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

from producers.poller import PollReport
from trailhouse.config import Settings
from trailhouse.output import duration, format_table
from trailhouse.registry import Registry
from trailhouse.sources import Source
from trailhouse.stack import kafka, shared_kafka


def progress_printer(out: TextIO = sys.stderr, every_s: float = 2.0) -> Callable[[str], None]:
    """A progress callback that prints at most one line every `every_s` seconds."""
    last = 0.0

    def show(line: str) -> None:
        nonlocal last
        if time.monotonic() - last >= every_s:
            print(f"  … {line}", file=out, flush=True)
            last = time.monotonic()

    return show


# --- sources -------------------------------------------------------------------------------------------------


def sources_add(settings: Settings, source: Source) -> str:
    with kafka(settings) as (bootstrap, _):
        previous = Registry(settings, bootstrap).add(source)
    verb = "updated" if previous else "added"
    return f"{verb} {source.source_id}: {source.bucket}, prefix {source.prefix or '(none)'}"


def sources_remove(settings: Settings, source_id: str) -> str:
    with kafka(settings) as (bootstrap, _):
        removed = Registry(settings, bootstrap).remove(source_id)
    return f"removed {removed.source_id}; its events stay searchable"


def sources_list(settings: Settings) -> str:
    with kafka(settings) as (bootstrap, _):
        sources = Registry(settings, bootstrap).sources()
    if not sources:
        return "no sources registered; add one with `trailhouse sources add --account ... --region ... --bucket ...`"
    rows = [(s.source_id, s.account, s.region, s.bucket, s.prefix, s.org_id or "", s.credentials) for s in sources]
    return format_table(rows, ("id", "account", "region", "bucket", "prefix", "org", "credentials"))


def sources_apply(settings: Settings, path: Path, *, dry_run: bool) -> str:
    """Make the registry equal to a TOML file of sources; the difference, one line per source, and a summary."""
    from trailhouse.sources_file import plan, read_sources_file

    desired = read_sources_file(path, datetime.now(UTC))
    with kafka(settings) as (bootstrap, _):
        registry = Registry(settings, bootstrap)
        changes = plan(registry.sources(), desired)
        if not dry_run:
            registry.apply(changes)
    lines = [c.describe() for c in changes.changes]
    lines.append(changes.summary() + (" (dry run: nothing written)" if dry_run else ""))
    return "\n".join(lines)


def sources_verify(settings: Settings, source_id: str | None, *, recent_hours: float) -> tuple[bool, str]:
    """Check each source (or one) with its own credentials; (all fine, the report in words)."""
    from datetime import timedelta

    from producers.credentials import AwsClients
    from producers.storage import open_store
    from producers.verify import verify_source
    from trailhouse.errors import SourceUnreadable, UnknownSource

    with kafka(settings) as (bootstrap, _):
        sources = Registry(settings, bootstrap).sources()
    if source_id is not None:
        sources = [s for s in sources if s.source_id == source_id]
        if not sources:
            raise UnknownSource(f"no source {source_id!r}; `trailhouse sources list` shows the registered ones")
    if not sources:
        return True, "no sources registered"
    clients = AwsClients(settings)
    reports = []
    ok = True
    for source in sources:
        try:
            store = open_store(source.bucket, lambda source=source: clients.s3(source))
        except SourceUnreadable as exc:
            reports.append(f"{source.source_id}\n  FAIL {exc}")
            ok = False
            continue
        verification = verify_source(source, store, now=datetime.now(UTC), recent=timedelta(hours=recent_hours))
        ok = ok and verification.ok
        reports.append(verification.render())
    return ok, "\n\n".join(reports)


def sources_status(settings: Settings) -> str:
    from datetime import timedelta

    from schemas import Codec
    from sinks.migrations import prepare
    from sinks.stats import source_states, source_totals
    from trailhouse.kafka import CompactedTable
    from trailhouse.status import source_status

    with kafka(settings) as (bootstrap, _):
        sources = Registry(settings, bootstrap).sources()
        checkpoints = CompactedTable(settings, bootstrap, settings.topic_checkpoints, Codec.of("Checkpoint")).read()
    if not sources:
        return "no sources registered"
    client, _ = prepare(settings)
    totals = source_totals(client, settings.clickhouse_database)
    states = source_states(client, settings.clickhouse_database)
    now = datetime.now(UTC)
    window = timedelta(seconds=settings.online_window)
    rows = []
    for source in sources:
        st = source_status(
            source,
            states.get(source.source_id),
            checkpoints.get(source.source_id),
            totals.get(source.source_id),
            now,
            window,
        )
        lag = duration(st.lag_p95_seconds) if st.lag_p95_seconds is not None else "-"
        rows.append(
            (
                source.source_id,
                source.account,
                source.region,
                st.status,
                f"{st.events:,}",
                _when(st.last_event_time),
                f"{st.events_last_hour:,}",
                lag,
                st.last_error,
            )
        )
    headers = ("id", "account", "region", "status", "events", "last event", "events/h", "lag p95", "last error")
    return format_table(rows, headers)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


# --- stages --------------------------------------------------------------------------------------------------


def run(settings: Settings, *, once: bool, timeout_s: float) -> int:
    """`trailhouse run [--once]`; returns the exit code."""
    from trailhouse.pipeline import run_forever, run_once

    with kafka(settings) as (bootstrap, embedded):
        if once:
            started = time.monotonic()
            report = run_once(settings, bootstrap, timeout_s=timeout_s, progress=progress_printer())
            if embedded is not None:
                embedded.save(embedded.drained_topics)  # drained: every checkpoint's records are stored
            print(once_summary(report, time.monotonic() - started))
            return 1 if report.failed else 0
        stop = _stop_on_signals()
        run_forever(settings, bootstrap, embedded, stop)
        return 0


def once_summary(report: PollReport, elapsed_s: float) -> str:
    rate = report.records / elapsed_s if elapsed_s > 0 else 0.0
    lines = [
        f"{report.files} new file(s), {report.records:,} record(s) ingested and searchable "
        f"in {elapsed_s:.1f}s ({rate:,.0f} records/s)"
    ]
    for failed in report.failed:
        lines.append(f"  {failed.source_id}: ERROR {failed.error}")
    return "\n".join(lines)


def _stop_on_signals() -> threading.Event:
    """First SIGINT/SIGTERM sets the event (clean stop); a second raises KeyboardInterrupt (skip the drain)."""
    import signal

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        print(f"\n{signal.Signals(signum).name}: stopping (again to skip the drain)", file=sys.stderr)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop


def poll(
    settings: Settings,
    *,
    once: bool,
    since: datetime | None = None,
    until: datetime | None = None,
    sqs_queue: str | None = None,
) -> int:
    """`trailhouse poll`: continuous (this poller's share of the sources, or an SQS queue), or one pass
    (`--once`, or a backfill with `--until`) with a progress line."""
    from producers.checkpoints import Bounds
    from trailhouse.progress import BackfillProgress
    from trailhouse.stages import poll_stage, run_poll, sqs_stage

    bounds = Bounds(since=since, until=until)
    with shared_kafka(settings, "poll") as bootstrap:
        if sqs_queue and once:
            sqs = sqs_stage(settings, bootstrap, sqs_queue).drain()
            print(
                f"{sqs.messages} notification(s): published {sqs.files} file(s), {sqs.records:,} record(s); "
                f"{sqs.skipped} skipped ({sqs.digests} digest file(s)), {sqs.messages - sqs.deleted} left in the queue"
            )
            for source_id, error in sqs.errors.items():
                print(f"  {source_id}: ERROR {error}")
            return 1 if sqs.errors else 0
        if not once and until is None:
            run_poll(settings, bootstrap, sqs_queue=sqs_queue, bounds=bounds)
            return 0
        progress = BackfillProgress(since=since, until=until)
        report = poll_stage(settings, bootstrap, bounds=bounds, observer=progress).poll_once()
        print(
            f"published {report.files} file(s), {report.records:,} record(s), {report.bytes / 1e6:,.1f} MB",
            file=sys.stdout,
        )
        for failed in report.failed:
            print(f"  {failed.source_id}: ERROR {failed.error}")
        return 1 if report.failed else 0


def worker(settings: Settings) -> int:
    from trailhouse.processes import use_one_malloc_arena
    from trailhouse.stages import run_worker

    use_one_malloc_arena()  # before shared_kafka's clients start threads
    with shared_kafka(settings, "worker") as bootstrap:
        run_worker(settings, bootstrap)
    return 0


def sink(settings: Settings) -> int:
    from trailhouse.stages import run_sink

    with shared_kafka(settings, "sink") as bootstrap:
        run_sink(settings, bootstrap)
    return 0


def migrate(settings: Settings, *, print_only: bool = False) -> str:
    """Apply the migrations and the configured retention; or, with `print_only`, show the DDL without running it."""
    from sinks.clickhouse import connect
    from sinks.ddl import Layout
    from sinks.migrations import migrate as apply
    from sinks.migrations import statements
    from sinks.retention import apply_retention

    layout = Layout(settings.clickhouse_database, settings.cluster)
    if print_only:
        return ";\n\n".join(statements(layout)) + ";"
    client = connect(settings.clickhouse_dsn)
    applied = apply(client, layout)
    lines = [f"applied migration(s) {', '.join(map(str, applied))}" if applied else "schema is up to date"]
    lines += [" ".join(sql.split()) for sql in apply_retention(client, layout, settings.retention_days)]
    return "\n".join(lines)


# --- search --------------------------------------------------------------------------------------------------


def search(
    settings: Settings,
    *,
    query: Any,
    limit: int,
    count_only: bool,
    output: str,
    out: TextIO = sys.stdout,
) -> int:
    from sinks import search as engine
    from sinks.migrations import prepare

    client, _ = prepare(settings)
    if count_only:
        print(engine.count(client, settings.clickhouse_database, query), file=out)
        return 0
    events = engine.search(client, settings.clickhouse_database, query, limit=limit, with_record=output != "table")
    if output == "json":
        for event in events:
            out.write(_json_line(event))
    elif output == "csv":
        _write_csv(events, (*engine.RESULT_COLUMNS, "record"), out)
    else:
        rows = [
            [_cell(event[c]) for c in engine.RESULT_COLUMNS if c not in ("user_arn", "event_id")] for event in events
        ]
        headers = [c for c in engine.RESULT_COLUMNS if c not in ("user_arn", "event_id")]
        print(format_table(rows, headers) if rows else "no matching events", file=out)
    return 0


def _cell(value: Any) -> Any:
    return _when(value) if isinstance(value, datetime) else value


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_csv(events: list[dict[str, Any]], columns: tuple[str, ...], out: TextIO) -> None:
    """A header, then one row per event (RFC 4180 quoting), times in ISO 8601 UTC, the original record last."""
    import csv

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for event in events:
        values = (event.get(c) for c in columns)
        writer.writerow([_iso(v) if isinstance(v, datetime) else ("" if v is None else v) for v in values])


def _json_line(event: dict[str, Any]) -> str:
    """One event as a JSON line: the enriched columns, then the original record embedded as it was written."""
    fields = {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in event.items() if k != "record"}
    head = orjson.dumps(fields).decode()
    return f'{head[:-1]},"record":{event["record"]}}}\n'


def insights(
    settings: Settings,
    *,
    since: datetime | None,
    source_id: str | None,
    limit: int,
    output: str,
    out: TextIO = sys.stdout,
) -> int:
    """`trailhouse insights`: the Start/End records of trailhouse's detector and of AWS's own Insights."""
    from sinks.insights_query import TABLE_HEADERS, list_insights, table_row
    from sinks.migrations import prepare

    client, _ = prepare(settings)
    found = list_insights(client, settings.clickhouse_database, since=since, source_id=source_id, limit=limit)
    if output == "json":
        for insight in found:
            out.write(_json_line(insight))
    else:
        rows = [[_cell(cell) for cell in table_row(insight)] for insight in found]
        print(format_table(rows, list(TABLE_HEADERS)) if rows else "no insights", file=out)
    return 0


# --- bench ---------------------------------------------------------------------------------------------------


def bench_search(
    settings: Settings,
    *,
    events: int,
    designs: tuple[str, ...],
    repeat: int,
    seed: int,
    json_path: str | None,
    keep: bool,
) -> str:
    from pathlib import Path

    from sinks.clickhouse import connect
    from trailhouse.bench import bench_search as run
    from trailhouse.bench import drop_designs, format_report, report_json

    report = run(settings, events=events, designs=designs, repeat=repeat, seed=seed, progress=progress_printer())
    if json_path:
        Path(json_path).write_bytes(report_json(report))
    if not keep:
        drop_designs(connect(settings.clickhouse_dsn), designs)
    return format_report(report)


def bench_insights(settings: Settings, *, sources: int, days: int, seed: int, json_path: str | None) -> str:
    """`trailhouse bench insights` with the worker's configured sensitivity, so a user can try their own."""
    import dataclasses
    from pathlib import Path

    from streams.insights import Sensitivity
    from trailhouse.bench_insights import format_report, run

    report = run(sources=sources, days=days, seed=seed, sensitivity=Sensitivity.of(settings))
    if json_path:
        Path(json_path).write_bytes(orjson.dumps(dataclasses.asdict(report), option=orjson.OPT_INDENT_2))
    return format_report(report)


# --- generate ------------------------------------------------------------------------------------------------


def generate(settings: Settings, *, destination: str, spec: Any) -> str:
    """Write generated CloudTrail files to a folder (path or file:///path) or a bucket (s3://bucket[/prefix]);
    a prefix in the bucket URL becomes the trail's key prefix."""
    import dataclasses
    from pathlib import Path

    from producers.credentials import s3_client_factory
    from trailhouse.generate import folder_writer, generate_files, write_files

    if destination.startswith("s3://"):
        bucket, _, prefix = destination.removeprefix("s3://").partition("/")
        spec = dataclasses.replace(spec, prefix=prefix.strip("/"))
        put = s3_writer(s3_client_factory(settings)(), bucket)
    else:
        put = folder_writer(Path(destination.removeprefix("file://")))
    show = progress_printer()
    files, records = write_files(
        generate_files(spec), put, progress=lambda f, r: show(f"{f} files, {r:,} records written")
    )
    return f"wrote {files} file(s) with {records:,} record(s) to {destination}"


def s3_writer(client: Any, bucket: str) -> Callable[[str, bytes], None]:
    from botocore.exceptions import BotoCoreError, ClientError

    from trailhouse.errors import SourceUnreadable

    def put(key: str, body: bytes) -> None:
        try:
            client.put_object(Bucket=bucket, Key=key, Body=body)
        except (ClientError, BotoCoreError) as exc:
            raise SourceUnreadable(f"cannot write s3://{bucket}/{key}: {exc}") from exc

    return put
