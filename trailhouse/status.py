"""A source's status for `trailhouse sources status`: the workers' state, checked against the clock.

The workers publish a SourceState on every change and a timer moves silent sources to IDLE; if the workers are
stopped, their last word may be stale, so an ONLINE whose last ingest is older than the online window is shown
as IDLE here. A source the workers have not seen yet is PENDING, or ERROR if its poll already failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sinks.stats import SourceTotals
from trailhouse.sources import Source


@dataclass(frozen=True)
class SourceStatus:
    source: Source
    status: str
    events: int
    last_event_time: datetime | None
    events_last_hour: int
    lag_p95_seconds: float | None
    last_error: str


def source_status(
    source: Source,
    state: dict[str, Any] | None,
    checkpoint: dict[str, Any] | None,
    totals: SourceTotals | None,
    now: datetime,
    online_window: timedelta,
) -> SourceStatus:
    poll_error = (checkpoint or {}).get("last_error") or ""
    if state is None:
        status = "ERROR" if poll_error else "PENDING"
        last_error = poll_error
    else:
        status = state["status"]
        last_ingest = state["last_ingest_time"]
        if status == "ONLINE" and (last_ingest is None or now - last_ingest > online_window):
            status = "IDLE"
        last_error = state["last_error"] or ""
    return SourceStatus(
        source=source,
        status=status,
        events=totals.events if totals else 0,
        last_event_time=totals.last_event_time if totals else None,
        events_last_hour=int(state["events_last_hour"]) if state else 0,
        lag_p95_seconds=state["lag_p95_seconds"] if state else None,
        last_error=last_error,
    )
