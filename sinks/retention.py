"""Retention: a TTL on each table that holds events or things derived from them, from configuration.

Retention counts from the *event time* of each row (when the AWS call happened), not from when trailhouse read it:
that is how audit-log retention is usually worded ("keep 12 months of audit history", "delete after 7 years"),
and it gives the same answer however late or how often a log file is read. A consequence to know before a
backfill: logs older than the retention are dropped by the next merge after they are ingested.

Rows are deleted by ClickHouse in background merges (on `events`, whole days at once: `ttl_only_drop_parts`), so
an expired row may stay readable for up to a day and until a merge runs. Unset retention leaves the tables as they
are, so a command started without the setting never removes a TTL another one set; 0 ("forever") removes it.
"""

from __future__ import annotations

import logging

from sinks.clickhouse import Client, call
from sinks.ddl import Layout, alter_storage

log = logging.getLogger(__name__)

# table -> the event-time column its TTL counts from. Adding a table to retention is one line here.
RETAINED: dict[str, str] = {
    "events": "event_time",
    "alerts": "alert_time",
    "insights": "event_time",
    "event_numbers": "event_time",
}


def ttl_expression(column: str, days: int) -> str:
    """The TTL as ClickHouse prints it back in system.tables, so the current one can be compared to it."""
    return f"toDateTime({column}) + toIntervalDay({days})"


def retention_statements(layout: Layout, days: int, current: dict[str, str | None]) -> list[str]:
    """The ALTERs that bring each retained table from its `current` TTL to `days` (0 = none)."""
    out = []
    for table, column in RETAINED.items():
        wanted = ttl_expression(column, days) if days else None
        if current.get(table) == wanted:
            continue
        clause = f"MODIFY TTL {wanted}" if wanted else "REMOVE TTL"
        out.append(alter_storage(layout, table, (clause,)))
    return out


def current_ttls(client: Client, layout: Layout) -> dict[str, str | None]:
    """Each retained table's TTL expression as the server holds it (None when it has none)."""
    names = {layout.storage(t).split(".", 1)[1].strip("`"): t for t in RETAINED}
    rows = call(
        "read table TTLs",
        lambda: (
            client.query(
                "SELECT name, engine_full FROM system.tables "
                "WHERE database = {db:String} AND name IN {names:Array(String)}",
                parameters={"db": layout.database, "names": list(names)},
            ).result_rows
        ),
    )
    return {names[name]: _ttl_of(engine) for name, engine in rows}


def _ttl_of(engine_full: str) -> str | None:
    if " TTL " not in engine_full:
        return None
    return engine_full.split(" TTL ", 1)[1].split(" SETTINGS ", 1)[0].strip()


def apply_retention(client: Client, layout: Layout, days: int | None) -> list[str]:
    """Set every retained table's TTL to `days` (0 removes it, None leaves it); return the statements run."""
    if days is None:
        return []
    statements = retention_statements(layout, days, current_ttls(client, layout))
    for sql in statements:
        call("set the retention TTL", lambda sql=sql: client.command(sql))
        log.info("ClickHouse %s: %s", layout.database, " ".join(sql.split()))
    return statements
