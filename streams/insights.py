"""Insights-style detection of unusual API call and error rates, as CloudTrail Insights does. Pure, no I/O, no clock.

What is counted, per source, per minute of event time:
- ApiCallRateInsight: write (not readOnly) management calls of one API (region, eventSource, eventName);
- ApiErrorRateInsight: management calls of one API that ended in one errorCode.

The statistic, and why. Per-minute API counts are small integers, often zero, with daily and weekly rhythm and
occasional bursts. A minute is unusual when all three hold:
  1. its count is at least `min_volume` (a handful of calls is never an insight, however rare the API);
  2. it is at least `ratio` times the baseline rate (an effect-size floor: Poisson alone flags every small
     wobble of a busy API, whose counts are over-dispersed);
  3. it is improbable under a Poisson law with the baseline rate: P(X >= count) < `p_value` (the right test
     for sparse counts, where mean/variance or median/MAD estimates degenerate to zero);
  4. it is `z` standard deviations above the rate, with the variance measured on the same minutes and never
     below Poisson's: an API whose level wanders by itself needs a larger jump to be unusual.
The baseline is the larger of the API's mean per minute for the same hour of day over the trailing window (7
days), so a daytime peak is measured against daytimes and a burst at night against nights (seasonality), and
its mean over the previous hour, so traffic that drifted up since last week is the new normal (see `baseline`).
The hourly totals keep calls, minutes and sums of squares, so rate and variance come from the same minutes.
Every closed minute feeds the baseline, unusual ones included, so a lasting change of level becomes the new
normal (through the previous-hour view) rather than an endless insight. The variance is robust: a minute's
square is taken of its count clipped at the larger of `ratio` times the same-hour-of-day rate and `min_volume`,
so one ramp or burst cannot inflate a week of that hour's variance (unclipped, a ramp at 3 a.m. made 3 a.m. of
the next days deaf to 5x bursts: `trailhouse bench insights`, NOTES.md). With less than
`min_history` of history for an API, nothing is flagged (AWS waits up to 36 h after Insights is enabled); the
baseline then uses the history there is. Memory per API is fixed: 168 hourly
totals (a week) and top-K attribution counters, whatever the traffic.

An insight starts at the first unusual minute and ends after `end_after` consecutive normal minutes (count below
`ratio` times baseline); Start and End share one id, derived from the source, the API and the start minute, so a
replay yields the same ids.

Event time, not arrival time: a minute closes once the source's newest event time is `lateness` past its end;
events for a closed minute are counted as late and ignored. Replaying the same events, or the same events
reordered within the allowed lateness, gives the same insights.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas import records

MINUTE_MS = 60_000
HOURS_KEPT = 168  # one week of hourly totals
TOP_K = 20  # attribution values kept per dimension
ATTRIBUTIONS = ("userIdentityArn", "userAgent", "errorCode")
CALL_RATE, ERROR_RATE = "ApiCallRateInsight", "ApiErrorRateInsight"


@dataclass(frozen=True)
class Sensitivity:
    min_volume: int = 10
    ratio: float = 3.0
    z: float = 6.0
    p_value: float = 1e-6
    min_history_minutes: int = 12 * 60
    end_after: int = 2
    lateness_minutes: int = 10

    @classmethod
    def of(cls, settings: Any) -> Sensitivity:
        """From trailhouse's Settings (`insights_*`; durations in seconds there, minutes here)."""
        return cls(
            min_volume=settings.insights_min_volume,
            ratio=settings.insights_ratio,
            z=settings.insights_z,
            p_value=settings.insights_p_value,
            min_history_minutes=int(settings.insights_min_history // 60),
            lateness_minutes=int(settings.insights_lateness // 60),
            end_after=settings.insights_end_after,
        )


@dataclass(frozen=True)
class Observation:
    """What one event contributes: its minute, the counters it falls into, and its attribution values."""

    minute: int  # epoch minute of eventTime
    keys: tuple[str, ...]
    attributes: tuple[str, str, str]  # userIdentityArn, userAgent, errorCode


def observe(event: dict[str, Any]) -> Observation | None:
    """The counters an enriched Event falls into; None when it is not a management call Insights counts."""
    if event.get("management_event") is False or event.get("event_category") not in (None, "Management"):
        return None
    api = f"{event['aws_region']}|{event['event_source']}|{event['event_name']}"
    keys = []
    if event.get("read_only") is False:
        keys.append(f"{CALL_RATE}|{api}|")
    if event.get("error_code"):
        keys.append(f"{ERROR_RATE}|{api}|{event['error_code']}")
    if not keys:
        return None
    attributes = (event.get("user_arn") or "", event.get("user_agent") or "", event.get("error_code") or "")
    return Observation(event["event_time"] // MINUTE_MS, tuple(keys), attributes)


# --- the per-source detector state, as plain JSON-able data (the value of a Faust table) ---------------------


def new_state() -> dict[str, Any]:
    return {"watermark": None, "closed": None, "open": {}, "apis": {}, "late": 0}


def _no_attr() -> dict[str, dict[str, float]]:
    return {dim: {} for dim in ATTRIBUTIONS}


def _new_api(first_minute: int) -> dict[str, Any]:
    return {
        "first": first_minute,  # first minute of history
        "next": first_minute,  # next minute to close
        "last_active": first_minute,  # last minute with a call (to forget APIs silent for a week)
        # [calls, minutes, sum of squares] of closed, normal minutes: per hour for the last HOURS_KEPT hours (a
        # ring, see `_hour`), and running sums of those hours over the week and per hour of day (so the baseline
        # costs O(1)).
        "hours": [0] * (3 * HOURS_KEPT),
        "newest": None,  # the newest hour in the ring
        "week": (0, 0, 0),
        "hod": {},
        "fed": 0,  # minutes that ever fed the baseline (attribution averages)
        "baseline_attr": _no_attr(),  # top-K counts over the whole history
        "insight": None,
    }


@dataclass
class Emitted:
    """Insights a batch produced, in order, and which APIs' state it changed or forgot (what the worker stores)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
    forgotten: set[str] = field(default_factory=set)


def add_events(state: dict[str, Any], observations: Iterable[Observation], source_id: str, s: Sensitivity) -> Emitted:
    """Count a batch of observations, close the minutes the watermark passed, return the insights it decided."""
    for obs in observations:
        if state["watermark"] is not None and obs.minute <= state["watermark"] - s.lateness_minutes:
            state["late"] += 1
            continue
        bucket = state["open"].setdefault(str(obs.minute), {})
        for key in obs.keys:
            _count(bucket, key, obs.attributes)
        state["watermark"] = obs.minute if state["watermark"] is None else max(state["watermark"], obs.minute)
    if state["watermark"] is None:
        return Emitted()
    return _close_minutes(state, state["watermark"] - s.lateness_minutes, source_id, s)


def _count(bucket: dict[str, Any], key: str, attributes: tuple[str, str, str]) -> None:
    entry = bucket.setdefault(key, {"n": 0, "attr": _no_attr()})
    entry["n"] += 1
    for dim, value in zip(ATTRIBUTIONS, attributes, strict=True):
        if value:
            _top_k_add(entry["attr"][dim], value, 1.0)


def _top_k_add(counter: dict[str, float], value: str, amount: float) -> None:
    """Space-saving top-K: a new value past K replaces the smallest, inheriting its count."""
    if value in counter or len(counter) < TOP_K:
        counter[value] = counter.get(value, 0.0) + amount
        return
    smallest = min(counter, key=counter.__getitem__)
    counter[value] = counter.pop(smallest) + amount


_EMPTY: dict[str, Any] = {"n": 0, "attr": _no_attr()}  # a minute without calls


def _close_minutes(state: dict[str, Any], until: int, source_id: str, s: Sensitivity) -> Emitted:
    """Close every minute up to `until`, for every API known (a minute without calls is a zero).

    An API is brought up to date only when a minute has calls for it, or while it has an insight open (a quiet
    minute may end it); the quiet minutes of the others are closed when the API is next touched. The result is
    the same as closing every API every minute (a quiet minute never starts an insight), but a batch changes
    only the APIs it touched, so the worker stores those alone instead of every API of the source."""
    emitted = Emitted()
    decided: list[tuple[int, dict[str, Any]]] = []
    previous_hour = (state.get("closed") or until) // 60
    for minute in sorted(int(m) for m in state["open"] if int(m) <= until):
        for key, entry in state["open"].pop(str(minute)).items():
            api = state["apis"].get(key)
            if api is None or (api["insight"] is None and minute - 1 - api["last_active"] > HOURS_KEPT * 60):
                api = state["apis"][key] = _new_api(minute)  # new, or silent for a week: its baseline is empty
            decided.extend(_catch_up(api, key, minute, source_id, s))
            decided.extend((minute, r) for r in _close(api, key, minute, entry, source_id, s))
            api["next"] = minute + 1
            emitted.changed.add(key)
    for key, api in state["apis"].items():
        if api["insight"] is not None and api["next"] <= until:
            decided.extend(_catch_up(api, key, until + 1, source_id, s))
            emitted.changed.add(key)
    if until // 60 != previous_hour:  # once an hour of event time: forget APIs silent for a week
        silent = [
            k for k, a in state["apis"].items() if a["insight"] is None and until - a["last_active"] > HOURS_KEPT * 60
        ]
        for key in silent:
            del state["apis"][key]
        emitted.forgotten.update(silent)
        emitted.changed.difference_update(silent)
    state["closed"] = until
    emitted.records = [record for _, record in sorted(decided, key=lambda d: d[0])]
    return emitted


def _catch_up(api: dict[str, Any], key: str, before: int, source_id: str, s: Sensitivity) -> Iterator[tuple[int, Any]]:
    """Close the API's quiet minutes up to `before` (excluded): while an insight is open each may end it; then
    (a quiet minute never starts one) the rest only feed the baseline, an hour at a time."""
    while api["insight"] is not None and api["next"] < before:
        minute = api["next"]
        yield from ((minute, r) for r in _close(api, key, minute, _EMPTY, source_id, s))
        api["next"] = minute + 1
    _feed_quiet(api, api["next"], before)
    api["next"] = max(api["next"], before)


@dataclass(frozen=True)
class Baseline:
    rate: float  # expected calls per minute
    variance: float  # of the per-minute count, at least `rate` (Poisson) and more when the API is bursty
    seasonal_rate: float = 0.0  # the same-hour-of-day view alone (what a minute's square is clipped against)


def baseline(api: dict[str, Any], minute: int) -> Baseline:
    """Expected calls per minute and their variance, the larger of two views of normal:
    - the same hour of day over the trailing week (seasonality: daytime against daytimes, nights against
      nights); until that hour of day has been seen, the busiest hour of day seen so far stands in, so the
      first working day after a quiet start is not an insight;
    - the previous hour (the level of the moment: an API whose traffic drifted up since last week).
    The hour in progress is left out of both, so a slow ramp is not learnt as normal while it climbs.
    Over-dispersed APIs get a wider band than Poisson's."""
    hour = minute // 60
    current = _hour(api, hour)
    same = _plus(api["hod"].get(str(hour % 24), (0, 0, 0)), current, -1)
    if same[1] >= 60:
        seasonal = _moments(*same)
    else:
        seen = [_moments(*stats) for slot, stats in api["hod"].items() if int(slot) != hour % 24 and stats[1] >= 60]
        seasonal = max(seen, default=_moments(*_plus(api["week"], current, -1)))
    recent = _moments(*_hour(api, hour - 1))
    rate, variance = max(seasonal, recent)
    return Baseline(rate, max(variance, rate), seasonal[0])


def _moments(calls: int, minutes: int, squares: int) -> tuple[float, float]:
    if not minutes:
        return 0.0, 0.0
    mean = calls / minutes
    return mean, max(0.0, squares / minutes - mean * mean)


def poisson_tail(count: int, rate: float) -> float:
    """P(X >= count) for X ~ Poisson(rate): the upper terms summed from the first, in log space."""
    if count <= 0:
        return 1.0
    if rate <= 0:
        return 0.0
    term = math.exp(-rate + count * math.log(rate) - math.lgamma(count + 1))
    total, k = 0.0, count
    while term > 1e-300:
        total += term
        k += 1
        term *= rate / k
        if term < total * 1e-12:
            break
    return min(1.0, total)


def is_unusual(count: int, base: Baseline, s: Sensitivity) -> bool:
    """Enough calls, `ratio` times the rate, improbable as Poisson and `z` deviations above an over-dispersed
    baseline."""
    rate = max(base.rate, 1.0 / 60)  # an API never seen before is compared with one call an hour
    deviations = (count - rate) / math.sqrt(max(base.variance, rate))
    return (
        count >= s.min_volume
        and count >= s.ratio * rate
        and deviations >= s.z
        and poisson_tail(count, rate) < s.p_value
    )


def _close(
    api: dict[str, Any], key: str, minute: int, entry: dict[str, Any], source_id: str, s: Sensitivity
) -> Iterator[dict[str, Any]]:
    """Decide one closed minute of one API; every minute then feeds the baseline (module docstring)."""
    count = entry["n"]
    if count:
        api["last_active"] = minute
    insight = api["insight"]
    base = baseline(api, minute)
    if insight is None:
        if minute - api["first"] >= s.min_history_minutes and is_unusual(count, base, s):
            api["insight"] = {
                "start": minute,
                "baseline": base.rate,
                "first": count,
                "calls": count,
                "minutes": 1,
                "normal": 0,
                "normal_calls": 0,
                "attr": {dim: dict(entry["attr"][dim]) for dim in ATTRIBUTIONS},
                "baseline_attr": {dim: dict(api["baseline_attr"][dim]) for dim in ATTRIBUTIONS},
                "baseline_fed": api["fed"],
                "baseline_minutes": sum(api["hours"][1::3]),
            }
            yield insight_record(source_id, key, api["insight"], "Start", minute)
    else:
        insight["calls"] += count
        insight["minutes"] += 1
        if count < s.ratio * max(insight["baseline"], 1.0 / 60):
            # A normal minute belongs to the insight only if an unusual one follows: hold its calls apart.
            insight["normal"] += 1
            insight["normal_calls"] += count
            _add_all(insight.setdefault("normal_attr", _no_attr()), entry["attr"])
        else:
            _add_all(insight["attr"], insight.pop("normal_attr", _no_attr()))
            _add_all(insight["attr"], entry["attr"])
            insight["normal"] = insight["normal_calls"] = 0
        if insight["normal"] >= s.end_after:
            # The insight covered up to its last unusual minute; the normal ones after it are not part of it.
            insight["calls"] -= insight["normal_calls"]
            insight["minutes"] -= insight["normal"]
            api["insight"] = None
            yield insight_record(source_id, key, insight, "End", insight["start"] + insight["minutes"])
    _feed_baseline(api, minute, count, entry, clip=max(math.ceil(s.ratio * base.seasonal_rate), s.min_volume))


def _add_all(into: dict[str, dict[str, float]], attr: dict[str, dict[str, float]]) -> None:
    for dim in ATTRIBUTIONS:
        for value, n in attr[dim].items():
            _top_k_add(into[dim], value, n)


def _feed_baseline(api: dict[str, Any], minute: int, count: int, entry: dict[str, Any], clip: int = 0) -> None:
    """Add one minute; its square is taken of the count clipped at `clip` (if any), so one burst cannot inflate
    the variance of a week of that hour."""
    bounded = min(count, clip) if clip else count
    _add_to_hour(api, minute // 60, (count, 1, bounded * bounded))
    _add_all(api["baseline_attr"], entry["attr"])


def _feed_quiet(api: dict[str, Any], first: int, end: int) -> None:
    """Add the minutes [first, end) without calls: the sums of feeding them one by one, in one step per hour
    (an API quiet for a day is brought up to date in 24 steps, not 1,440)."""
    minute = first
    while minute < end:
        hour = minute // 60
        minutes = min(end, (hour + 1) * 60) - minute
        _add_to_hour(api, hour, (0, minutes, 0))
        minute += minutes


def upgraded_api(api: dict[str, Any]) -> dict[str, Any]:
    """An API's state as a worker before the ring stored it (hours as a dict of str(hour) -> totals), in today's
    form, so a worker upgraded on an existing changelog keeps its baselines."""
    hours = api["hours"]
    if not isinstance(hours, dict):
        return api
    ring = [0] * (3 * HOURS_KEPT)
    newest = max(map(int, hours), default=None)
    for hour, stats in hours.items():
        at = 3 * (int(hour) % HOURS_KEPT)
        ring[at : at + 3] = stats
    return {**api, "hours": ring, "newest": newest}


def _hour(api: dict[str, Any], hour: int) -> tuple[int, int, int]:
    """An hour's totals. The week is a ring of HOURS_KEPT slots of three ints, hour h at slot h % HOURS_KEPT,
    holding the hours (newest - HOURS_KEPT, newest]: a list of ints of a fixed size, ~8 kB per API in memory (~20
    kB when its counts are in the thousands), where a dict of hour -> tuple grew to ~40 kB over the first week (a
    worker holds one per source and API)."""
    newest = api["newest"]
    if newest is None or not newest - HOURS_KEPT < hour <= newest:
        return (0, 0, 0)
    at = 3 * (hour % HOURS_KEPT)
    ring = api["hours"]
    return (ring[at], ring[at + 1], ring[at + 2])


def _add_to_hour(api: dict[str, Any], hour: int, added: tuple[int, int, int]) -> None:
    """Add (calls, minutes, squares) to an hour's totals, after dropping the hours that left the week. Minutes are
    added in time order, so `hour` is the newest or a later one."""
    ring, newest = api["hours"], api["newest"]
    if newest is None or hour > newest:
        for later in range(hour if newest is None else max(newest + 1, hour - HOURS_KEPT + 1), hour + 1):
            at = 3 * (later % HOURS_KEPT)
            # The hour `later - HOURS_KEPT` (or a week before that, after a silence: the same hour of day, as
            # HOURS_KEPT is whole days, so `_shift` takes it off the same sums)
            expired = (ring[at], ring[at + 1], ring[at + 2])
            if any(expired):
                _shift(api, later - HOURS_KEPT, expired, -1)
                ring[at : at + 3] = (0, 0, 0)
        api["newest"] = hour
    elif hour <= newest - HOURS_KEPT:
        return  # already out of the week
    at = 3 * (hour % HOURS_KEPT)
    ring[at : at + 3] = _plus(ring[at : at + 3], added, 1)
    _shift(api, hour, added, 1)
    api["fed"] += added[1]


def _plus(a: Any, b: Any, sign: int) -> tuple[int, int, int]:
    return (a[0] + sign * b[0], a[1] + sign * b[1], a[2] + sign * b[2])


def _shift(api: dict[str, Any], hour: int, stats: Any, sign: int) -> None:
    api["week"] = _plus(api["week"], stats, sign)
    slot = str(hour % 24)
    api["hod"][slot] = _plus(api["hod"].get(slot, (0, 0, 0)), stats, sign)


def insight_id(source_id: str, key: str, start_minute: int) -> str:
    digest = hashlib.sha256(f"{source_id}|{key}|{start_minute}".encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def insight_record(source_id: str, key: str, insight: dict[str, Any], state: str, minute: int) -> dict[str, Any]:
    """An insight in CloudTrail Insights' record shape; Start at the first unusual minute, End after the last."""
    insight_type, region, event_source, event_name, error_code = key.split("|")
    if state == "Start":
        average, duration = insight["first"], 1
    else:
        duration = insight["minutes"]
        average = insight["calls"] / duration
    context: dict[str, Any] = {
        "statistics": {
            "baseline": {"average": round(insight["baseline"], 6)},
            "insight": {"average": round(average, 6)},
            "insightDuration": duration,
            "baselineDuration": insight["baseline_minutes"],
        },
        "attributions": [
            {
                "attribute": dim,
                "insight": _averages(insight["attr"][dim], insight["minutes"]),
                "baseline": _averages(insight["baseline_attr"][dim], max(insight["baseline_fed"], 1)),
            }
            for dim in ATTRIBUTIONS
            if insight_type == ERROR_RATE or dim != "errorCode"
        ],
    }
    details: dict[str, Any] = {
        "state": state,
        "eventSource": event_source,
        "eventName": event_name,
        "insightType": insight_type,
        "insightContext": context,
    }
    if error_code:
        details["errorCode"] = error_code
    return {
        "eventVersion": "1.08",
        "eventTime": _iso(minute),
        "awsRegion": region,
        "eventID": insight_id(source_id, f"{key}|{state}", insight["start"]),
        "eventType": "AwsCloudTrailInsight",
        "recipientAccountId": source_id.split("-")[1],
        "sharedEventID": insight_id(source_id, key, insight["start"]),
        "insightDetails": details,
        "eventCategory": "Insight",
    }


def _averages(counter: dict[str, float], minutes: int) -> list[dict[str, Any]]:
    """Top 5 values with their average per minute; the rest summed as Other."""
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    top = [{"value": value, "average": round(n / minutes, 6)} for value, n in ranked[:5]]
    rest = sum(n for _, n in ranked[5:])
    if rest:
        top.append({"value": "Other", "average": round(rest / minutes, 6)})
    return top


def _iso(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_avro(record: dict[str, Any], source_id: str, *, aws_made: bool = False) -> dict[str, Any]:
    """The `Insight` Avro record of an insight record in CloudTrail's shape (built in schemas.records, shared with
    the poller, which publishes the Insights AWS delivers on the same topic with aws_made=true)."""
    return records.insight(record, source_id, aws_made=aws_made)
