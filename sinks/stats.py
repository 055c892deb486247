"""Per-source figures read from ClickHouse: exact event totals from `events`, the workers' view from `sources`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sinks.clickhouse import Client, call, utc


@dataclass(frozen=True)
class SourceTotals:
    events: int
    first_event_time: datetime
    last_event_time: datetime
    last_ingest_time: datetime


def source_totals(client: Client, database: str) -> dict[str, SourceTotals]:
    sql = (
        "SELECT source_id, count(), min(event_time), max(event_time), max(ingest_time) "
        f"FROM {database}.events FINAL GROUP BY source_id"
    )
    rows = call("read source totals", lambda: client.query(sql).result_rows)
    return {row[0]: SourceTotals(int(row[1]), utc(row[2]), utc(row[3]), utc(row[4])) for row in rows}


def source_states(client: Client, database: str) -> dict[str, dict[str, Any]]:
    """The latest SourceState the workers published for each source."""
    result = call("read source states", lambda: client.query(f"SELECT * FROM {database}.sources FINAL"))
    return {
        row[0]: {name: utc(value) for name, value in zip(result.column_names, row, strict=True)}
        for row in result.result_rows
    }
