"""A source's status in words, from its registration, its poller checkpoint and its totals in ClickHouse.

PENDING  registered, no event seen yet and no failed poll
ONLINE   an event was ingested within the online window
IDLE     polling works, but nothing was ingested within the online window
ERROR    the last poll failed; `detail` says why and what to do
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sinks.stats import SourceTotals
from trailhouse.sources import Source

ONLINE_WINDOW = timedelta(minutes=30)


@dataclass(frozen=True)
class SourceStatus:
    source_id: str
    status: str
    events: int
    files: int
    last_event_time: datetime | None
    last_ingest_time: datetime | None
    last_poll_time: datetime | None
    detail: str


def source_status(
    source: Source, checkpoint: dict[str, Any] | None, totals: SourceTotals | None, now: datetime
) -> SourceStatus:
    error = checkpoint.get("last_error") if checkpoint else None
    last_poll = checkpoint["last_poll_time"] if checkpoint and checkpoint["last_poll_time"].timestamp() > 0 else None
    if error:
        status, detail = "ERROR", error
    elif totals is None:
        status = "PENDING"
        detail = "not polled yet" if last_poll is None else "polled; no log files found yet"
    elif now - totals.last_ingest_time <= ONLINE_WINDOW:
        status, detail = "ONLINE", ""
    else:
        status, detail = "IDLE", f"nothing ingested for {_ago(now - totals.last_ingest_time)}"
    return SourceStatus(
        source_id=source.source_id,
        status=status,
        events=totals.events if totals else 0,
        files=checkpoint["files"] if checkpoint else 0,
        last_event_time=totals.last_event_time if totals else None,
        last_ingest_time=totals.last_ingest_time if totals else None,
        last_poll_time=last_poll,
        detail=detail,
    )


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} days"
