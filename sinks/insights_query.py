"""Reading the `insights` table for `trailhouse insights`: Start and End records, newest first.

An insight is two rows sharing `shared_event_id`; listing them as rows (not pairs) shows an insight still open
(a Start without its End) exactly as it is. `LIMIT 1 BY event_id` keeps one copy of a record written twice (a
replayed chunk re-emits the same ids) without relying on a merge.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sinks.clickhouse import Client, call, utc

COLUMNS = (
    "event_time",
    "state",
    "insight_type",
    "source_id",
    "recipient_account_id",
    "aws_region",
    "event_source",
    "event_name",
    "error_code",
    "baseline_average",
    "insight_average",
    "insight_duration",
    "baseline_duration",
    "aws_made",
    "shared_event_id",
    "event_id",
)


def list_insights(
    client: Client, database: str, *, since: datetime | None, source_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """Insight records at or after `since` (of one source if given), newest first, with their `record` JSON."""
    where, params = ["1"], {}
    if since is not None:
        where.append("event_time >= {since:DateTime64(3, 'UTC')}")
        params["since"] = since
    if source_id:
        where.append("source_id = {source:String}")
        params["source"] = source_id
    sql = (
        f"SELECT {', '.join(COLUMNS)}, record FROM {database}.insights WHERE {' AND '.join(where)} "
        f"ORDER BY event_time DESC, event_id LIMIT 1 BY event_id LIMIT {int(limit)}"
    )
    result = call("list insights", lambda: client.query(sql, parameters=params))
    return [{k: utc(v) for k, v in zip(result.column_names, row, strict=True)} for row in result.result_rows]


def table_row(insight: dict[str, Any]) -> list[Any]:
    """The columns of `trailhouse insights`' table: when, what, which API, how far from normal, who made it."""
    api = f"{insight['event_source'].removesuffix('.amazonaws.com')}:{insight['event_name']}"
    if insight["error_code"]:
        api += f" ({insight['error_code']})"
    kind = "error rate" if insight["insight_type"] == "ApiErrorRateInsight" else "call rate"
    return [
        insight["event_time"],
        insight["state"],
        kind,
        insight["source_id"],
        api,
        f"{insight['insight_average']:g}/min vs {insight['baseline_average']:g}/min",
        f"{insight['insight_duration']} min",
        "AWS" if insight["aws_made"] else "trailhouse",
    ]


TABLE_HEADERS = ("event_time", "state", "insight", "source_id", "api", "rate", "duration", "by")
