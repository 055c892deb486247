"""Versioned DDL of trailhouse's ClickHouse tables, applied by `trailhouse migrate` and at every sink start.

Each migration is a version number, a description and statements. Statements are idempotent (IF NOT EXISTS), so
two sinks starting at once may both run one and still end in the same schema; the applied versions are recorded
in `schema_migrations` (a ReplacingMergeTree, so a version recorded twice still reads as one row). A migration
is never edited once released: change a table with a new version.

The `events` table:
- one row per CloudTrail record; ReplacingMergeTree on (account, time, event id), so a record ingested twice
  collapses into one row, and searches read with FINAL so they never depend on a merge having run;
- partitioned by day of event time, ordered for per-account time-range queries;
- inserts carry a de-duplication token (`non_replicated_deduplication_window`), so a batch retried after a
  crash between insert and offset commit is skipped by ClickHouse itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sinks.clickhouse import Client, call

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "events table",
        (
            """
            CREATE TABLE IF NOT EXISTS {db}.events
            (
                event_id String,
                event_time DateTime64(3, 'UTC'),
                event_version LowCardinality(String),
                event_type LowCardinality(String),
                event_category LowCardinality(String),
                event_source LowCardinality(String),
                event_name LowCardinality(String),
                aws_region LowCardinality(String),
                recipient_account_id LowCardinality(String),
                source_id LowCardinality(String),
                user_type LowCardinality(String),
                user_arn String,
                user_name String,
                user_account_id String,
                access_key_id String,
                source_ip String,
                user_agent String,
                error_code LowCardinality(String),
                error_message String,
                read_only Nullable(Bool),
                management_event Nullable(Bool),
                request_id String,
                object_key String,
                ingest_time DateTime64(3, 'UTC'),
                record String CODEC(ZSTD(3))
            )
            ENGINE = ReplacingMergeTree(ingest_time)
            PARTITION BY toDate(event_time)
            ORDER BY (recipient_account_id, event_time, event_id)
            SETTINGS non_replicated_deduplication_window = 10000
            """,
        ),
    ),
    Migration(
        2,
        "events: analyst columns of Event v2 (actor, resources, action_class, ...)",
        (
            """
            ALTER TABLE {db}.events
                ADD COLUMN IF NOT EXISTS actor String,
                ADD COLUMN IF NOT EXISTS session_issuer_arn String,
                ADD COLUMN IF NOT EXISTS mfa_used Nullable(Bool),
                ADD COLUMN IF NOT EXISTS ip_version Nullable(UInt8),
                ADD COLUMN IF NOT EXISTS user_agent_family LowCardinality(String),
                ADD COLUMN IF NOT EXISTS resources Array(String),
                ADD COLUMN IF NOT EXISTS action_class LowCardinality(String) DEFAULT 'other',
                ADD COLUMN IF NOT EXISTS is_error Bool DEFAULT error_code != '',
                ADD COLUMN IF NOT EXISTS outcome LowCardinality(String)
                    DEFAULT if(error_code != '', 'failure', 'success'),
                ADD COLUMN IF NOT EXISTS console_login LowCardinality(String),
                ADD COLUMN IF NOT EXISTS tls_version LowCardinality(String),
                ADD COLUMN IF NOT EXISTS vpc_endpoint_id String,
                ADD COLUMN IF NOT EXISTS derived_fields Array(LowCardinality(String))
            """,
        ),
    ),
    Migration(
        3,
        "sources table: per-source state from cloudtrail.sources",
        (
            """
            CREATE TABLE IF NOT EXISTS {db}.sources
            (
                source_id String,
                status LowCardinality(String),
                status_since DateTime64(3, 'UTC'),
                first_event_time Nullable(DateTime64(3, 'UTC')),
                last_event_time Nullable(DateTime64(3, 'UTC')),
                last_ingest_time Nullable(DateTime64(3, 'UTC')),
                last_poll_time Nullable(DateTime64(3, 'UTC')),
                events_total UInt64,
                files_total UInt64,
                duplicates_total UInt64,
                dead_letters_total UInt64,
                poll_errors_total UInt64,
                errors_total UInt64,
                events_last_hour UInt64,
                last_error String,
                last_error_time Nullable(DateTime64(3, 'UTC')),
                lag_p50_seconds Nullable(Float64),
                lag_p95_seconds Nullable(Float64),
                updated_at DateTime64(3, 'UTC')
            )
            ENGINE = ReplacingMergeTree(updated_at)
            ORDER BY source_id
            SETTINGS non_replicated_deduplication_window = 10000
            """,
        ),
    ),
)


def migrate(client: Client, database: str) -> list[int]:
    """Bring `database` up to the newest version; return the versions applied now."""
    call(f"create database {database}", lambda: client.command(f"CREATE DATABASE IF NOT EXISTS {database}"))
    call(
        "create schema_migrations",
        lambda: client.command(
            f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
            "(version UInt32, description String, applied_at DateTime DEFAULT now()) "
            "ENGINE = ReplacingMergeTree ORDER BY version"
        ),
    )
    done = {
        row[0]
        for row in call(
            "read schema_migrations",
            lambda: client.query(f"SELECT version FROM {database}.schema_migrations FINAL").result_rows,
        )
    }
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        for statement in migration.statements:
            sql = statement.format(db=database)
            call(f"apply migration {migration.version}", lambda sql=sql: client.command(sql))
        call(
            "record migration",
            lambda m=migration: client.insert(
                f"{database}.schema_migrations", [[m.version, m.description]], column_names=["version", "description"]
            ),
        )
        log.info("ClickHouse %s: applied migration %d (%s)", database, migration.version, migration.description)
        applied.append(migration.version)
    return applied
