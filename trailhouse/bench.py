"""`trailhouse bench search`: measure wildcard search designs on generated CloudTrail events, in one run.

1. Stage N events once: generated (trailhouse.generate: 20 accounts, 2 regions, 30 days from a fixed date) and
   enriched (streams.enrich) exactly as the pipeline would, into a staging table kept between runs (generating
   is the slow part: ~7k events/s on a busy 2-core machine).
2. Load the same rows into every design (sinks/bench.py) in sink-sized batches; time the inserts and the merges
   that follow, and measure the size on disk.
3. Time the account-number searches users run (`trailhouse search '*<account>*'`: the newest 100 as a table,
   the same with the records as `--format json` prints them, and `--count`) for a busy account, a rare one and
   a miss, interleaving designs so that noise from other processes spreads evenly; the query-condition cache
   is off so every run does the work.

Figures, never assertions: the report gives p50/p99 per design and case, ratios to the full scan (`scan`) of the
same run, and whether trailhouse's design met the goal (p50 <= 50 ms, p99 <= 200 ms, ingest <= 2x the scan's).
"""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from sinks import bench
from sinks.clickhouse import Client, call, connect
from sinks.ddl import Layout
from sinks.migrations import migrate
from sinks.tables import events_table
from streams.enrich import FileContext, enrich
from trailhouse.config import Settings
from trailhouse.errors import ConfigError
from trailhouse.generate import GenerateSpec, generate_files

GOAL_P50_MS, GOAL_P99_MS, GOAL_INGEST_RATIO = 50.0, 200.0, 2.0
LIMIT = 100
STAGE_DATABASE = "bench_stage"
_START = datetime(2026, 10, 1, tzinfo=UTC)


@dataclass
class DesignResult:
    name: str
    about: str
    insert_s: float
    merge_s: float
    merges_settled: bool
    bytes_on_disk: int
    parts: int


@dataclass
class QueryResult:
    design: str
    case: str
    kind: str  # search (table output) | json (search with the record, as --format json|csv) | count
    runs_ms: list[float] = field(default_factory=list)
    answer: int = -1  # events returned (search) or counted

    @property
    def p50(self) -> float:
        return bench.percentile(self.runs_ms, 50)

    @property
    def p99(self) -> float:
        return bench.percentile(self.runs_ms, 99)


@dataclass
class Report:
    events: int
    repeat: int
    started: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    stage_s: float = 0.0
    stage_reused: bool = False
    designs: list[DesignResult] = field(default_factory=list)
    cases: list[bench.Case] = field(default_factory=list)
    queries: list[QueryResult] = field(default_factory=list)


def bench_search(
    settings: Settings,
    *,
    events: int,
    designs: Sequence[str],
    repeat: int,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Report:
    chosen = [_design(name) for name in designs]
    client = connect(settings.clickhouse_dsn)
    client.set_client_setting("use_query_condition_cache", 0)
    report = Report(events, repeat, datetime.now(UTC).isoformat(timespec="seconds"), os.getloadavg())
    started = time.perf_counter()
    stage, batches, report.stage_reused = stage_events(client, events, seed, settings.sink_batch_events, progress)
    report.stage_s = time.perf_counter() - started
    columns = events_table().columns
    layouts = {}
    for design in chosen:
        layout = layouts[design.name] = bench.create(client, design, f"bench_{design.name}")
        insert_s = bench.load(client, layout, stage, columns, batches, progress)
        merge_s, settled = bench.settle(client, layout)
        size, parts = bench.footprint(client, layout)
        report.designs.append(DesignResult(design.name, design.about, insert_s, merge_s, settled, size, parts))
    report.cases = bench.cases(client, stage, LIMIT)
    results = {
        (d.name, c.name, kind): QueryResult(d.name, c.name, kind)
        for d in chosen
        for c in report.cases
        for kind in KINDS
    }
    for round_ in range(repeat + 1):  # round 0 warms caches up and is not recorded
        if progress is not None:
            progress(f"queries: round {round_}/{repeat}")
        for design in chosen:
            for case in report.cases:
                for kind in KINDS:
                    ms, answer = _run(kind, client, layouts[design.name], design, case)
                    result = results[(design.name, case.name, kind)]
                    result.answer = answer
                    if round_:
                        result.runs_ms.append(ms)
    report.queries = list(results.values())
    report.load_after = os.getloadavg()
    return report


KINDS = ("search", "json", "count")


def _run(kind: str, client: Client, layout: Layout, design: bench.Design, case: bench.Case) -> tuple[float, int]:
    if kind == "count":
        return bench.run_count(client, layout, design, case)
    return bench.run_search(client, layout, design, case, LIMIT, with_record=kind == "json")


def _design(name: str) -> bench.Design:
    for design in bench.DESIGNS:
        if design.name == name:
            return design
    known = ", ".join(d.name for d in bench.DESIGNS)
    raise ConfigError(f"unknown design {name!r}; known: {known}")


def stage_events(
    client: Client, events: int, seed: int, batch_rows: int, progress: Callable[[str], None] | None
) -> tuple[str, int, bool]:
    """The staging table of `events` generated events, its number of batches, and whether a previous run had
    staged the same events already (they are reused)."""
    table = f"{STAGE_DATABASE}.events_{events}_{seed}"
    batches = -(-events // batch_rows)
    exists = call(
        "look for staged events",
        lambda: client.query(
            "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {name:String}",
            parameters={"db": STAGE_DATABASE, "name": table.split(".")[1]},
        ).result_rows[0][0],
    )
    if exists and client.query(f"SELECT count(), max(batch) + 1 FROM {table}").result_rows[0] == (events, batches):
        return table, batches, True
    _create_stage(client, table)
    spec = events_table()
    pending: list[dict[str, Any]] = []
    written = batch = 0
    started = time.perf_counter()
    generate = GenerateSpec(
        events=events, accounts=20, seed=seed, regions=("us-east-1", "eu-west-1"), start=_START, span=timedelta(days=30)
    )
    for log_file in generate_files(generate):
        parts = log_file.key.split("/")  # AWSLogs/<account>/CloudTrail/<region>/...
        ctx = FileContext(
            f"cloudtrail-{parts[1]}-{parts[3]}", log_file.key, parts[1], parts[3], int(_START.timestamp() * 1000)
        )
        for record in orjson.loads(gzip.decompress(log_file.body))["Records"]:
            pending.append(enrich(orjson.dumps(record).decode(), ctx))
            if len(pending) == batch_rows:
                _stage_batch(client, table, spec.columns, spec.to_columns(pending), batch)
                written, batch, pending = written + len(pending), batch + 1, []
                if progress is not None:
                    rate = written / (time.perf_counter() - started)
                    progress(f"staged {written:,}/{events:,} generated events ({rate:,.0f}/s)")
    if pending:
        _stage_batch(client, table, spec.columns, spec.to_columns(pending), batch)
    return table, batches, False


def _create_stage(client: Client, table: str) -> None:
    """A MergeTree ordered by batch, with the events table's column types (read off a migrated reference)."""
    reference = Layout(f"{STAGE_DATABASE}_reference")
    migrate(client, reference)
    rows = client.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'events' "
        "AND default_kind NOT IN ('MATERIALIZED', 'ALIAS') ORDER BY position",
        parameters={"db": reference.database},
    ).result_rows
    columns = ", ".join(f"{name} {kind}" for name, kind in rows)
    for sql in (
        f"CREATE DATABASE IF NOT EXISTS {STAGE_DATABASE}",
        f"DROP TABLE IF EXISTS {table}",
        f"CREATE TABLE {table} (batch UInt32, {columns}) ENGINE = MergeTree ORDER BY batch",
        f"DROP DATABASE {reference.database}",
    ):
        call("create the staging table", lambda sql=sql: client.command(sql))


def _stage_batch(client: Client, table: str, columns: Sequence[str], data: list[list[Any]], batch: int) -> None:
    call(
        "stage generated events",
        lambda: client.insert(
            table, [[batch] * len(data[0]), *data], column_names=["batch", *columns], column_oriented=True
        ),
    )


def drop_designs(client: Client, designs: Sequence[str]) -> None:
    for name in designs:
        call("drop a benchmark database", lambda name=name: client.command(f"DROP DATABASE IF EXISTS bench_{name}"))


# --- report --------------------------------------------------------------------------------------------------


def format_report(report: Report) -> str:
    """The tables `trailhouse bench search` prints: ingest and size, then query times, with ratios to `scan`."""
    from trailhouse.output import format_table

    base = next((d for d in report.designs if d.name == "scan"), None)

    def ratio(value: float, reference: float | None) -> str:
        return f"{value / reference:.2f}x" if reference else "-"

    staged = "reused from an earlier run" if report.stage_reused else f"generated in {report.stage_s:,.0f}s"
    lines = [
        f"{report.events:,} events ({staged}), {report.repeat} runs per query (p99 of fewer than 100 runs is the "
        f"slowest), load average {report.load_before[0]:.1f} before and {report.load_after[0]:.1f} after",
        "",
        format_table(
            [
                (
                    d.name,
                    f"{d.insert_s:.1f}",
                    ratio(d.insert_s, base.insert_s if base else None),
                    f"{d.merge_s:.1f}" + ("" if d.merges_settled else " (still merging)"),
                    f"{report.events / d.insert_s:,.0f}" if d.insert_s else "-",
                    f"{d.bytes_on_disk / 1e6:,.0f}",
                    ratio(d.bytes_on_disk, base.bytes_on_disk if base else None),
                    d.parts,
                    d.about,
                )
                for d in report.designs
            ],
            ("design", "insert s", "vs scan", "merge s", "rows/s", "MB", "vs scan", "parts", "what"),
        ),
        "",
    ]
    scan_p50 = {(q.case, q.kind): q.p50 for q in report.queries if q.design == "scan"}
    matches = {c.name: c for c in report.cases}
    lines.append(
        format_table(
            [
                (
                    q.design,
                    f"{q.case} {matches[q.case].pattern}",
                    q.kind,
                    f"{q.p50:.1f}",
                    f"{q.p99:.1f}",
                    f"{max(q.runs_ms):.1f}",
                    ratio(q.p50, scan_p50.get((q.case, q.kind))),
                    f"{q.answer:,}",
                )
                for q in report.queries
            ],
            ("design", "case", "query", "p50 ms", "p99 ms", "max ms", "p50 vs scan", "events"),
        )
    )
    lines += ["", *goal_lines(report)]
    return "\n".join(lines)


def goal_lines(report: Report) -> list[str]:
    """Whether trailhouse's design met the issue's goal in this run, in words."""
    ours = [q for q in report.queries if q.design == bench.TRAILHOUSE and q.kind != "count"]
    design = next((d for d in report.designs if d.name == bench.TRAILHOUSE), None)
    base = next((d for d in report.designs if d.name == "scan"), None)
    if not ours or design is None:
        return [f"goal: not evaluated (trailhouse's design, {bench.TRAILHOUSE}, was not measured)"]
    out = []
    for q in ours:
        met = q.p50 <= GOAL_P50_MS and q.p99 <= GOAL_P99_MS
        verdict = "met" if met else "NOT met"
        out.append(f"goal {q.case} ({q.kind}): p50 {q.p50:.1f} ms, p99 {q.p99:.1f} ms -> {verdict}")
    if base is not None and base.insert_s:
        ingest = design.insert_s / base.insert_s
        verdict = "met" if ingest <= GOAL_INGEST_RATIO else "NOT met"
        out.append(f"goal ingest: {ingest:.2f}x the scan design's insert time -> {verdict}")
    agree = {(q.case, q.kind): q.answer for q in report.queries if q.design == "scan"}
    differ = [q for q in report.queries if agree.get((q.case, q.kind), q.answer) != q.answer]
    out.append("every design found the same events" if not differ else f"designs DISAGREE: {differ}")
    return out


def report_json(report: Report) -> bytes:
    data = asdict(report)
    for query, result in zip(data["queries"], report.queries, strict=True):
        query |= {"p50_ms": result.p50, "p99_ms": result.p99, "max_ms": max(result.runs_ms)}
    return orjson.dumps(data, option=orjson.OPT_INDENT_2)
