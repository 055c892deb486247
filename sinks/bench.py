"""The ClickHouse side of `trailhouse bench search`: candidate physical designs of `events`, the same rows loaded
into each, and searches timed through the real search code (sinks/search.py).

Each design is a database migrated like a real one, to the version before the search design (the full-scan
baseline) or to the newest (trailhouse's design), plus, for the alternatives, one extra index. Rows come from a
staging table in sink-sized batches (`INSERT ... SELECT`), so every design is fed the same batches the same way.
Nothing here asserts a time: the machine is shared and noisy; callers print figures and ratios.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sinks.clickhouse import Client, call
from sinks.ddl import Layout, alter_storage
from sinks.migrations import migrate
from sinks.search import SearchQuery, count, parse_query, search

BEFORE_SEARCH_DESIGN = 3  # the last migration before `search_numbers` (migration 4)
BEFORE_NUMBERS_TABLE = 8  # the last migration before `event_numbers` (migration 9)


@dataclass(frozen=True)
class Design:
    name: str
    about: str
    version: int | None  # migrations applied; None = all (trailhouse's design)
    index: str | None = None  # an extra ADD INDEX clause on top
    number_index: bool = False  # has `search_numbers`, which searches use
    number_table: bool = False  # has `event_numbers`, which searches use


DESIGNS: tuple[Design, ...] = (
    Design("scan", "no index: LIKE over every record (the full-scan baseline)", BEFORE_SEARCH_DESIGN),
    Design(
        "ngrambf",
        "ngrambf_v1 bloom filter of the record's 4-grams, per granule",
        BEFORE_SEARCH_DESIGN,
        "INDEX record_ngrams record TYPE ngrambf_v1(4, 262144, 3, 0) GRANULARITY 1",
    ),
    Design(
        "text_ngrams",
        "text (inverted) index of the record's 4-grams",
        BEFORE_SEARCH_DESIGN,
        "INDEX record_text record TYPE text(tokenizer = ngrams(4))",
    ),
    Design(
        "numbers",
        "search_numbers (12-digit windows of digit runs) + text index, re-check when not exact",
        BEFORE_NUMBERS_TABLE,
        number_index=True,
    ),
    Design(
        "lookup",
        "trailhouse: numbers + event_numbers (number, time -> the table's columns) filled by a materialized view",
        None,
        number_index=True,
        number_table=True,
    ),
)
TRAILHOUSE = "lookup"  # the design trailhouse's migrations create, judged against the goal


def create(client: Client, design: Design, database: str) -> Layout:
    """A fresh database holding an empty `events` table of `design`."""
    layout = Layout(database)
    call("drop a benchmark database", lambda: client.command(f"DROP DATABASE IF EXISTS {database}"))
    migrate(client, layout, upto=design.version)
    if design.index:
        sql = alter_storage(layout, "events", (f"ADD {design.index}",))
        call("add the design's index", lambda: client.command(sql))
    return layout


def load(
    client: Client,
    layout: Layout,
    stage: str,
    columns: Sequence[str],
    batches: int,
    progress: Callable[[str], None] | None = None,
) -> float:
    """Insert the staged rows batch by batch, as the sink does; return the seconds spent in inserts."""
    names = ", ".join(columns)
    spent = 0.0
    for batch in range(batches):
        sql = f"INSERT INTO {layout.name('events')} ({names}) SELECT {names} FROM {stage} WHERE batch = {batch}"
        started = time.perf_counter()
        call("load a benchmark batch", lambda sql=sql: client.command(sql))
        spent += time.perf_counter() - started
        if progress is not None:
            progress(f"{layout.database}: batch {batch + 1}/{batches}")
    return spent


_TABLES = "('events', 'event_numbers')"  # what searches read, in every design that has them


def settle(client: Client, layout: Layout, timeout_s: float = 900.0) -> tuple[float, bool]:
    """Wait until no merge runs on the table (twice in a row); return (seconds waited, settled in time)."""
    sql = f"SELECT count() FROM system.merges WHERE database = {{db:String}} AND table IN {_TABLES}"
    started = time.perf_counter()
    quiet = 0
    while quiet < 2:
        if time.perf_counter() - started > timeout_s:
            return time.perf_counter() - started, False
        running = call("watch merges", lambda: client.query(sql, parameters={"db": layout.database}).result_rows)
        quiet = quiet + 1 if running[0][0] == 0 else 0
        time.sleep(0.5)
    return time.perf_counter() - started, True


def footprint(client: Client, layout: Layout) -> tuple[int, int]:
    """(bytes on disk, active parts) of the design's tables (`events`, and `event_numbers` if it has it)."""
    sql = (
        "SELECT sum(bytes_on_disk), count() FROM system.parts "
        f"WHERE database = {{db:String}} AND table IN {_TABLES} AND active"
    )
    rows = call("measure a design", lambda: client.query(sql, parameters={"db": layout.database}).result_rows)
    return int(rows[0][0] or 0), int(rows[0][1])


@dataclass(frozen=True)
class Case:
    name: str  # hit-busy, hit-rare, miss
    pattern: str
    matches: int


def cases(client: Client, stage: str, limit: int) -> list[Case]:
    """The account numbers to look for: the most frequent one, a rare one that still fills a page, and a miss."""
    sql = (
        "SELECT number, count() AS n FROM (SELECT arrayJoin(arrayDistinct(extractAll(record, '[0-9]{12}'))) AS number "
        f"FROM {stage}) GROUP BY number ORDER BY n DESC"
    )
    counts = call("count account numbers", lambda: client.query(sql).result_rows)
    busy = counts[0]
    filling = [row for row in counts if row[1] >= limit]
    rare = filling[-1] if filling else counts[-1]
    present = {row[0] for row in counts}
    miss = next(n for n in (f"{d}" * 12 for d in "0123456789") if n not in present)
    return [
        Case("hit-busy", f"*{busy[0]}*", int(busy[1])),
        Case("hit-rare", f"*{rare[0]}*", int(rare[1])),
        Case("miss", f"*{miss}*", 0),
    ]


def run_search(
    client: Client, layout: Layout, design: Design, case: Case, limit: int, *, with_record: bool
) -> tuple[float, int]:
    """One search as `trailhouse search PATTERN` runs it (`with_record`: as `--format json|csv` runs it):
    (milliseconds, events returned)."""
    query = SearchQuery(parse_query(case.pattern))
    started = time.perf_counter()
    found = search(
        client,
        layout.database,
        query,
        limit=limit,
        with_record=with_record,
        number_index=design.number_index,
        number_table=design.number_table,
    )
    return (time.perf_counter() - started) * 1000, len(found)


def run_count(client: Client, layout: Layout, design: Design, case: Case) -> tuple[float, int]:
    """One `trailhouse search PATTERN --count`: (milliseconds, count)."""
    query = SearchQuery(parse_query(case.pattern))
    started = time.perf_counter()
    n = count(client, layout.database, query, number_index=design.number_index, number_table=design.number_table)
    return (time.perf_counter() - started) * 1000, n


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): with fewer than 100 runs, p99 is the slowest run."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]
