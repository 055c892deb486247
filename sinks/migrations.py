"""Versioned DDL of trailhouse's ClickHouse tables, applied by `trailhouse migrate` and at every sink start.

Each migration is a version number, a description and the statements it runs, rendered for one server or for a
cluster (sinks/ddl.py). The applied versions are recorded in `schema_migrations`.

Safe from several processes at once: every statement is idempotent (IF NOT EXISTS, OR REPLACE, a mutation run
twice gives the same result), so two sinks starting together may both run a migration and still end in the same
schema; `schema_migrations` is a ReplacingMergeTree read with FINAL, so a version recorded twice reads as one.
A migration is never edited once released: change a table with a new version.

The `events` table:
- one row per CloudTrail record; ReplacingMergeTree on (account, time, event id), so a record ingested twice
  collapses into one row, and searches never depend on a merge having run (sinks/search.py);
- partitioned by day of event time, ordered for per-account time-range queries;
- inserts carry a de-duplication token (`non_replicated_deduplication_window`), so a batch retried after a
  crash between insert and offset commit is skipped by ClickHouse itself (sinks/sink.py);
- `search_numbers` (version 4): every 12-digit window of every run of 12 or more digits in the record, with a
  text index on it, so `*<account number>*` reads only the rows that hold the number. Chosen by measurement
  (`trailhouse bench search`, NOTES.md): an n-gram index on the whole record does not skip (4-grams of digits
  are everywhere) and a text index of n-grams of the whole record makes inserts ~20x slower.

The `event_numbers` table (version 9): one row per (number in `search_numbers`, stored copy of an event), ordered
by number then time, with the columns a search shows as a table; a materialized view fills it from every insert
into `events`. A rare account's newest page is then one short range of one table (~14 ms at 2M events) instead of
~100 granules of `events` scattered over a month of day partitions (~90 ms). Rows ingested before version 9 are
copied in by the migration itself (after the view exists, so nothing falls between; a row copied twice, or by
two sinks migrating at once, is a duplicate that ReplacingMergeTree and the search collapse).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from sinks.clickhouse import Client, call, connect
from sinks.ddl import Layout, Table, add_columns, alter_storage, create_materialized_view, create_table, create_view
from sinks.retention import apply_retention
from trailhouse.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: Callable[[Layout], Sequence[str]]


def _events(layout: Layout) -> list[str]:
    return create_table(
        layout,
        Table(
            "events",
            columns=(
                "event_id String",
                "event_time DateTime64(3, 'UTC')",
                "event_version LowCardinality(String)",
                "event_type LowCardinality(String)",
                "event_category LowCardinality(String)",
                "event_source LowCardinality(String)",
                "event_name LowCardinality(String)",
                "aws_region LowCardinality(String)",
                "recipient_account_id LowCardinality(String)",
                "source_id LowCardinality(String)",
                "user_type LowCardinality(String)",
                "user_arn String",
                "user_name String",
                "user_account_id String",
                "access_key_id String",
                "source_ip String",
                "user_agent String",
                "error_code LowCardinality(String)",
                "error_message String",
                "read_only Nullable(Bool)",
                "management_event Nullable(Bool)",
                "request_id String",
                "object_key String",
                "ingest_time DateTime64(3, 'UTC')",
                "record String CODEC(ZSTD(3))",
            ),
            engine="ReplacingMergeTree",
            engine_args="ingest_time",
            partition_by="toDate(event_time)",
            order_by="(recipient_account_id, event_time, event_id)",
            # Granules of at most 1 MiB (~700 events, not ~7,000): a page of records found through event_numbers
            # lies scattered over as many granules as it has events, and each is read whole (100 scattered
            # records, 2M events: 316 -> 48 ms; marks 10x, size +2%). Read-only once the table exists: databases
            # created before keep 10 MiB granules (NOTES.md, issue 5).
            settings={"non_replicated_deduplication_window": 10000, "index_granularity_bytes": 1048576},
            shard_by="cityHash64(event_id)",
        ),
    )


def _events_v2_columns(layout: Layout) -> list[str]:
    return add_columns(
        layout,
        "events",
        (
            "actor String",
            "session_issuer_arn String",
            "mfa_used Nullable(Bool)",
            "ip_version Nullable(UInt8)",
            "user_agent_family LowCardinality(String)",
            "resources Array(String)",
            "action_class LowCardinality(String) DEFAULT 'other'",
            "is_error Bool DEFAULT error_code != ''",
            "outcome LowCardinality(String) DEFAULT if(error_code != '', 'failure', 'success')",
            "console_login LowCardinality(String)",
            "tls_version LowCardinality(String)",
            "vpc_endpoint_id String",
            "derived_fields Array(LowCardinality(String))",
        ),
    )


# Every 12-character window of every run of 12+ digits: `*123456789012*` matches a record exactly when this
# array holds '123456789012', even inside a longer number. Kept in step with sinks/search.py:number_windows.
SEARCH_NUMBERS = (
    "arrayDistinct(arrayFlatten(arrayMap(run -> arrayMap(i -> substring(run, i, 12), "
    "range(1, toUInt64(length(run)) - 10)), extractAll(record, '[0-9]{12,}'))))"
)


def _events_search_numbers(layout: Layout) -> list[str]:
    return [
        *add_columns(layout, "events", (f"search_numbers Array(String) MATERIALIZED {SEARCH_NUMBERS}",)),
        alter_storage(
            layout,
            "events",
            ("ADD INDEX IF NOT EXISTS search_numbers_idx search_numbers TYPE text(tokenizer = array)",),
        ),
        # Rows written before this version: store the column and index them (background mutations; until they
        # finish, those rows are searched by computing the column, which is slower but gives the same answer).
        alter_storage(layout, "events", ("MATERIALIZE COLUMN search_numbers",)),
        alter_storage(layout, "events", ("MATERIALIZE INDEX search_numbers_idx",)),
        # With a retention TTL, whole days expire at once: drop their parts instead of rewriting them.
        alter_storage(layout, "events", ("MODIFY SETTING ttl_only_drop_parts = 1",)),
    ]


# What `event_numbers` holds of an event besides the number: the key, what `trailhouse search` shows as a table,
# and the per-copy columns (source, file, ingest time) that decide which copy of an event is the newest.
EVENT_NUMBERS_COLUMNS = (
    "event_time DateTime64(3, 'UTC')",
    "recipient_account_id LowCardinality(String)",
    "event_id String",
    "aws_region LowCardinality(String)",
    "event_source LowCardinality(String)",
    "event_name LowCardinality(String)",
    "actor String",
    "user_arn String",
    "source_ip String",
    "error_code LowCardinality(String)",
    "source_id LowCardinality(String)",
    "object_key String",
    "ingest_time DateTime64(3, 'UTC')",
)


def _event_numbers(layout: Layout) -> list[str]:
    names = ", ".join(column.split()[0] for column in EVENT_NUMBERS_COLUMNS)
    select = f"SELECT arrayJoin(search_numbers) AS number, {names} FROM {{source}}"
    return [
        *create_table(
            layout,
            Table(
                "event_numbers",
                columns=("number String", *EVENT_NUMBERS_COLUMNS),
                engine="ReplacingMergeTree",
                engine_args="ingest_time",
                partition_by="toYYYYMM(event_time)",
                order_by="(number, event_time, recipient_account_id, event_id)",
                # A rare number's page is a few rows: small granules read less around them. The window lets a
                # batch the sink retries skip what the view already wrote (sinks/sink.py).
                settings={"index_granularity": 1024, "non_replicated_deduplication_window": 10000},
                shard_by="cityHash64(event_id)",
            ),
        ),
        create_materialized_view(layout, "event_numbers_mv", "events", "event_numbers", select),
        # Events stored before this version (through the Distributed tables on a cluster, which shard the copy
        # by event id as they shard the events).
        f"INSERT INTO {layout.name('event_numbers')} (number, {names}) "
        + ("SETTINGS distributed_foreground_insert = 1 " if layout.cluster else "")
        + select.replace("{source}", layout.name("events")),
    ]


def _sources(layout: Layout) -> list[str]:
    return create_table(
        layout,
        Table(
            "sources",
            columns=(
                "source_id String",
                "status LowCardinality(String)",
                "status_since DateTime64(3, 'UTC')",
                "first_event_time Nullable(DateTime64(3, 'UTC'))",
                "last_event_time Nullable(DateTime64(3, 'UTC'))",
                "last_ingest_time Nullable(DateTime64(3, 'UTC'))",
                "last_poll_time Nullable(DateTime64(3, 'UTC'))",
                "events_total UInt64",
                "files_total UInt64",
                "duplicates_total UInt64",
                "dead_letters_total UInt64",
                "poll_errors_total UInt64",
                "errors_total UInt64",
                "events_last_hour UInt64",
                "last_error String",
                "last_error_time Nullable(DateTime64(3, 'UTC'))",
                "lag_p50_seconds Nullable(Float64)",
                "lag_p95_seconds Nullable(Float64)",
                "updated_at DateTime64(3, 'UTC')",
            ),
            engine="ReplacingMergeTree",
            engine_args="updated_at",
            order_by="source_id",
            settings={"non_replicated_deduplication_window": 10000},
        ),
    )


def _alerts(layout: Layout) -> list[str]:
    return create_table(
        layout,
        Table(
            "alerts",
            columns=(
                "alert_id String",
                "rule_id LowCardinality(String)",
                "severity LowCardinality(String)",
                "alert_time DateTime64(3, 'UTC')",
                "detect_time DateTime64(3, 'UTC')",
                "source_id LowCardinality(String)",
                "recipient_account_id LowCardinality(String)",
                "event_ids Array(String)",
                "summary String",
            ),
            engine="ReplacingMergeTree",
            engine_args="detect_time",
            partition_by="toYYYYMM(alert_time)",
            order_by="(recipient_account_id, alert_time, alert_id)",
            settings={"non_replicated_deduplication_window": 10000},
            shard_by="cityHash64(alert_id)",
        ),
    )


def _insights(layout: Layout) -> list[str]:
    """Start and End records of insights (trailhouse's detector and AWS's own); one row per record id, so a
    replayed chunk that re-emits an insight collapses into the row it already has."""
    return create_table(
        layout,
        Table(
            "insights",
            columns=(
                "source_id LowCardinality(String)",
                "event_id String",
                "shared_event_id String",
                "state LowCardinality(String)",
                "event_time DateTime64(3, 'UTC')",
                "aws_region LowCardinality(String)",
                "recipient_account_id LowCardinality(String)",
                "event_source LowCardinality(String)",
                "event_name LowCardinality(String)",
                "insight_type LowCardinality(String)",
                "error_code LowCardinality(String)",
                "baseline_average Float64",
                "insight_average Float64",
                "insight_duration UInt32",
                "baseline_duration UInt32",
                "aws_made Bool",
                "record String CODEC(ZSTD(3))",
            ),
            engine="ReplacingMergeTree",
            partition_by="toYYYYMM(event_time)",
            order_by="(source_id, event_time, event_id)",
            settings={"non_replicated_deduplication_window": 10000},
            shard_by="cityHash64(event_id)",
        ),
    )


def _sink_batches(layout: Layout) -> list[str]:
    return create_table(
        layout,
        Table(
            "sink_batches",
            columns=(
                "sink_group String",
                "topic String",
                "partition UInt32",
                "first_offset Int64",
                "last_offset Int64",
                "written_at DateTime64(3, 'UTC') DEFAULT now64(3)",
            ),
            engine="ReplacingMergeTree",
            engine_args="written_at",
            order_by="(sink_group, topic, partition)",
        ),
    )


def _analyst_views(layout: Layout) -> list[str]:
    events = layout.name("events")
    return [
        create_view(layout, "events_latest", f"SELECT * FROM {events} FINAL"),
        create_view(
            layout,
            "recent_changes",
            f"""
            SELECT event_time, recipient_account_id, aws_region, event_source, event_name, action_class, actor,
                   user_arn, source_ip, resources, JSONExtractRaw(record, 'requestParameters') AS request_parameters,
                   event_id, source_id
            FROM {events} FINAL
            WHERE action_class IN ('create', 'modify', 'delete') AND NOT is_error
            ORDER BY event_time DESC
            """,
        ),
        create_view(
            layout,
            "errors_by_api",
            f"""
            SELECT toDate(event_time) AS day, recipient_account_id, event_source, event_name, error_code,
                   count() AS errors, uniqExact(user_arn) AS principals, max(event_time) AS last_seen
            FROM {events} FINAL
            WHERE is_error
            GROUP BY day, recipient_account_id, event_source, event_name, error_code
            ORDER BY day DESC, errors DESC
            """,
        ),
    ]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events table", _events),
    Migration(2, "events: analyst columns of Event v2 (actor, resources, action_class, ...)", _events_v2_columns),
    Migration(3, "sources table: per-source state from cloudtrail.sources", _sources),
    Migration(4, "events: search_numbers column and its text index (account-number search)", _events_search_numbers),
    Migration(5, "alerts table", _alerts),
    Migration(6, "sink_batches: the batch each sink writes, for exact replays after a crash", _sink_batches),
    Migration(7, "analyst views: events_latest, recent_changes, errors_by_api", _analyst_views),
    Migration(8, "insights table: Insights Start/End records from cloudtrail.insights", _insights),
    Migration(9, "event_numbers: number -> newest events lookup, fed by a materialized view", _event_numbers),
)

SCHEMA_MIGRATIONS = Table(
    "schema_migrations",
    columns=("version UInt32", "description String", "applied_at DateTime DEFAULT now()"),
    engine="ReplacingMergeTree",
    order_by="version",
)


def migrate(client: Client, layout: Layout, *, upto: int | None = None) -> list[int]:
    """Bring the database up to the newest version (or to `upto`); return the versions applied now."""
    for sql in (layout.create_database(), *create_table(layout, SCHEMA_MIGRATIONS)):
        call("create schema_migrations", lambda sql=sql: client.command(sql))
    done = applied_versions(client, layout)
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done or (upto is not None and migration.version > upto):
            continue
        for sql in migration.statements(layout):
            call(f"apply migration {migration.version}", lambda sql=sql: client.command(sql))
        call(
            "record migration",
            lambda m=migration: client.insert(
                f"{layout.name('schema_migrations')}",
                [[m.version, m.description]],
                column_names=["version", "description"],
            ),
        )
        log.info("ClickHouse %s: applied migration %d (%s)", layout.database, migration.version, migration.description)
        applied.append(migration.version)
    return applied


def prepare(settings: Settings) -> tuple[Client, Layout]:
    """What every command that touches ClickHouse does first: connect, migrate, apply the configured retention."""
    client = connect(settings.clickhouse_dsn)
    layout = Layout(settings.clickhouse_database, settings.cluster)
    migrate(client, layout)
    apply_retention(client, layout, settings.retention_days)
    return client, layout


# The embedded engine runs inside the sink's process, so what its background work holds counts against the sink's
# memory. Two settings:
# - A horizontal merge holds buffers for every column of every part it merges; a vertical one, a column at a time.
#   ClickHouse merges vertically from 131,072 rows on; the embedded engine does so from the first part of the events
#   table. `trailhouse bench pipeline`, 100k -> 400k events, two runs each: sink peak RSS 533-554 -> 566-570 MB end
#   to end, against 557-594 -> 580-671 without (NOTES.md, issue 7).
# - From 100 outdated parts on, ClickHouse removes a table's in its parts-cleaning pool, which grows to 128 threads
#   and keeps them: in the bench at 1.6M events the sink went from ~32 to ~150 threads, ~120 of them idle to its end.
#   Every table of the database removes them in one thread: any the sink writes often gets there (alerts and
#   insights do with busy sources). The sink alone ingests as fast (17.1-17.7k events/s, 17.3k before; NOTES.md).
# A server keeps ClickHouse's defaults: its memory is not the sink's.
EMBEDDED_SETTINGS = {"concurrent_part_removal_threshold": 2**62}
EMBEDDED_TABLE_SETTINGS = {
    "events": {
        "vertical_merge_algorithm_min_rows_to_activate": 1,
        "vertical_merge_algorithm_min_columns_to_activate": 1,
    },
}


def tune_embedded_tables(client: Client, layout: Layout) -> None:
    """Set EMBEDDED_SETTINGS on every MergeTree table of the database, and EMBEDDED_TABLE_SETTINGS on theirs; the
    sink does, on the embedded engine, as it starts. Read from the engine, so a table a migration adds is included."""
    tables = call(
        "list the embedded engine's tables",
        partial(
            client.query,
            "SELECT name FROM system.tables WHERE database = {db:String} AND engine LIKE '%MergeTree' ORDER BY name",
            parameters={"db": layout.database},
        ),
    ).result_rows
    for (table,) in tables:
        settings = {**EMBEDDED_SETTINGS, **EMBEDDED_TABLE_SETTINGS.get(table, {})}
        assignments = ", ".join(f"{name} = {value}" for name, value in settings.items())
        sql = alter_storage(layout, table, (f"MODIFY SETTING {assignments}",))
        call(f"set the embedded engine's settings of {table}", partial(client.command, sql))


def applied_versions(client: Client, layout: Layout) -> set[int]:
    sql = f"SELECT version FROM {layout.name('schema_migrations')} FINAL"
    return {row[0] for row in call("read schema_migrations", lambda: client.query(sql).result_rows)}


def statements(layout: Layout) -> list[str]:
    """Every statement of every migration, in order: what `trailhouse migrate --print` shows for review."""
    return [
        *(s for s in (layout.create_database(), *create_table(layout, SCHEMA_MIGRATIONS))),
        *(sql for m in MIGRATIONS for sql in m.statements(layout)),
    ]
