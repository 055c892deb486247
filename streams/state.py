"""Per-source state: pure functions over a plain dict (the value of the Faust table `source-state`).

The state is updated once per log-file chunk and once per poll outcome, never per event. Status is a function of
the state and the wall clock (`evaluate`), so the same inputs give the same status, a worker restart recomputes
it instead of trusting a stale one, and a timer can re-evaluate sources that went silent.

    ERROR    the last poll of the source failed (the poller's checkpoint carries the reason)
    PENDING  no event seen yet
    ONLINE   an event was ingested within the online window
    IDLE     otherwise
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

LAG_SAMPLES = 256
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS

State = dict[str, Any]


@dataclass(frozen=True)
class ChunkSummary:
    """What one processed `cloudtrail.raw` message contributes to its source's state."""

    first_chunk: bool  # chunk 0 of a file: counts the file once
    events: int  # published, duplicates excluded
    duplicates: int
    dead_letters: int
    ingest_time_ms: int
    event_times_ms: tuple[int, ...]


def new_state(source_id: str, now_ms: int) -> State:
    return {
        "source_id": source_id,
        "status": "PENDING",
        "status_since": now_ms,
        "first_event_time": None,
        "last_event_time": None,
        "last_ingest_time": None,
        "last_poll_time": None,
        "events_total": 0,
        "files_total": 0,
        "duplicates_total": 0,
        "dead_letters_total": 0,
        "poll_errors_total": 0,
        "last_error": None,
        "last_error_time": None,
        "poll_failing": False,
        "poll_dead_letters": 0,  # the poller's dead-letter counter, as of its last checkpoint
        "minutes": {},  # ingest minute (epoch ms) -> events, for the last hour
        "lags_s": [],  # the last LAG_SAMPLES (ingest time - event time), seconds
    }


def apply_chunk(state: State, chunk: ChunkSummary) -> State:
    s = dict(state)
    s["files_total"] += int(chunk.first_chunk)
    s["events_total"] += chunk.events
    s["duplicates_total"] += chunk.duplicates
    s["dead_letters_total"] += chunk.dead_letters
    if chunk.dead_letters:
        s["last_error"] = f"{chunk.dead_letters} record(s) could not be read; see the cloudtrail.dlq topic"
        s["last_error_time"] = chunk.ingest_time_ms
    if chunk.event_times_ms:
        first, last = min(chunk.event_times_ms), max(chunk.event_times_ms)
        s["first_event_time"] = first if s["first_event_time"] is None else min(s["first_event_time"], first)
        s["last_event_time"] = last if s["last_event_time"] is None else max(s["last_event_time"], last)
        s["last_ingest_time"] = max(s["last_ingest_time"] or 0, chunk.ingest_time_ms)
        minute = str(chunk.ingest_time_ms - chunk.ingest_time_ms % MINUTE_MS)
        s["minutes"] = {**s["minutes"], minute: s["minutes"].get(minute, 0) + chunk.events}
        lags = [(chunk.ingest_time_ms - t) / 1000 for t in chunk.event_times_ms[-LAG_SAMPLES:]]
        s["lags_s"] = (s["lags_s"] + lags)[-LAG_SAMPLES:]
    return s


def apply_poll(state: State, checkpoint: dict[str, Any]) -> State:
    """Merge a poller checkpoint: a poll that failed sets ERROR until a later one succeeds; files and records the
    poller dead-lettered (its `dead_letters` counter grew) count as errors, with the last reason, without ERROR."""
    s = dict(state)
    poll_time = _ms(checkpoint["last_poll_time"])
    dead, seen = checkpoint.get("dead_letters") or 0, s.get("poll_dead_letters", 0)
    if dead > seen:
        s["dead_letters_total"] += dead - seen
        s["last_error"] = checkpoint.get("last_dead_letter") or s["last_error"]
        s["last_error_time"] = poll_time
    s["poll_dead_letters"] = dead
    if s["last_poll_time"] is not None and poll_time <= s["last_poll_time"]:
        return s  # an older outcome, read again after a restart
    s["last_poll_time"] = poll_time
    error = checkpoint.get("last_error")
    if error:
        s["poll_errors_total"] += 1
        s["last_error"], s["last_error_time"] = error, poll_time
    s["poll_failing"] = bool(error)
    return s


def evaluate(state: State, now_ms: int, online_window_ms: int) -> State:
    """Recompute status and the rolling figures at `now_ms`; `status_since` moves only when status changes."""
    s = dict(state)
    if s["poll_failing"]:
        status = "ERROR"
    elif s["events_total"] == 0:
        status = "PENDING"
    elif now_ms - (s["last_ingest_time"] or 0) <= online_window_ms:
        status = "ONLINE"
    else:
        status = "IDLE"
    if status != s["status"]:
        s["status"], s["status_since"] = status, now_ms
    s["minutes"] = {m: n for m, n in s["minutes"].items() if int(m) > now_ms - HOUR_MS}
    return s


def to_record(state: State, now_ms: int) -> dict[str, Any]:
    """The `SourceState` Avro record of a state."""
    lags = sorted(state["lags_s"])
    return {
        "source_id": state["source_id"],
        "status": state["status"],
        "status_since": state["status_since"],
        "first_event_time": state["first_event_time"],
        "last_event_time": state["last_event_time"],
        "last_ingest_time": state["last_ingest_time"],
        "last_poll_time": state["last_poll_time"],
        "events_total": state["events_total"],
        "files_total": state["files_total"],
        "duplicates_total": state["duplicates_total"],
        "dead_letters_total": state["dead_letters_total"],
        "poll_errors_total": state["poll_errors_total"],
        "errors_total": state["dead_letters_total"] + state["poll_errors_total"],
        "events_last_hour": sum(n for m, n in state["minutes"].items() if int(m) > now_ms - HOUR_MS),
        "last_error": state["last_error"],
        "last_error_time": state["last_error_time"],
        "lag_p50_seconds": _percentile(lags, 0.50),
        "lag_p95_seconds": _percentile(lags, 0.95),
        "updated_at": now_ms,
    }


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else int(value)


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)
