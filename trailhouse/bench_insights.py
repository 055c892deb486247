"""`trailhouse bench insights`: how well the Insights-style detector finds known anomalies. Reports, never asserts.

Traffic: several sources over `days` simulated days. Each source has APIs with rates spread over three orders of
magnitude (busy Describe-like writes, everyday changes, rare APIs), a daily rhythm (peak in the working day), a
quieter weekend, per-minute Poisson noise on a level that drifts slowly between 0.7x and 1.4x (real API counts
are over-dispersed),
and a few percent of calls failing with one of two error codes. After the first two days, known anomalies are
injected at random times: call-rate bursts (5x to 30x the API's current rate, 3 to 30 minutes), error storms
(one API's calls failing at 20 to 60 per minute for 5 to 20 minutes), and slow ramps (the rate climbing to 8x
over an hour, then falling back).

The events go through the same code the worker runs (streams.insights.observe + add_events, per source, in
batches of minutes, with files arriving out of order within the allowed lateness) and the insights are scored:
- an anomaly is found when an insight of its kind on its API starts between its start and its end;
- precision: found-anomaly insights / all Start insights; recall per anomaly kind;
- detection delay: event-time minutes from the anomaly's start to the insight's start (the decision is then
  known `lateness` minutes later, when the minute closes);
- false insights per source per day.
Bursts whose expected count per minute is below the detector's minimum volume are listed apart: by design (as in
AWS) a handful of calls is never an insight.
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from streams.insights import CALL_RATE, ERROR_RATE, MINUTE_MS, Sensitivity, add_events, new_state, observe

ERROR_CODES = ("AccessDenied", "ThrottlingException")
START_MINUTE = 29_000_000  # 2025-02-20 (a Thursday), any fixed epoch minute keeps runs reproducible


@dataclass(frozen=True)
class Api:
    region: str
    source: str
    name: str
    rate: float  # mean calls per minute over the week
    read_only: bool


@dataclass(frozen=True)
class Anomaly:
    source_id: str
    kind: str  # burst, error_storm, ramp
    api: Api
    start: int  # epoch minute
    minutes: int
    factor: float  # burst multiplier, or errors per minute for storms
    expected_per_minute: float

    @property
    def insight_type(self) -> str:
        return ERROR_RATE if self.kind == "error_storm" else CALL_RATE


@dataclass
class Report:
    sources: int
    days: int
    events: int
    insights: int
    true_insights: int
    precision: float
    recall: dict[str, float]
    found: dict[str, str]
    delay_minutes_p50: float | None
    delay_minutes_p95: float | None
    delay_minutes_max: int | None
    false_per_source_day: float
    below_min_volume: int
    seconds: float
    events_per_second: float
    sensitivity: dict[str, Any] = field(default_factory=dict)


def _apis(rng: random.Random) -> list[Api]:
    names = [
        ("ec2.amazonaws.com", "RunInstances"), ("ec2.amazonaws.com", "CreateTags"), ("ec2.amazonaws.com",
        "AuthorizeSecurityGroupIngress"), ("iam.amazonaws.com", "CreateAccessKey"), ("iam.amazonaws.com",
        "AttachRolePolicy"), ("s3.amazonaws.com", "PutBucketPolicy"), ("s3.amazonaws.com", "PutObjectAcl"),
        ("kms.amazonaws.com", "CreateGrant"), ("lambda.amazonaws.com", "UpdateFunctionCode"),
        ("sts.amazonaws.com", "AssumeRole"), ("logs.amazonaws.com", "CreateLogStream"), ("ssm.amazonaws.com",
        "PutParameter"), ("ec2.amazonaws.com", "DeleteSnapshot"), ("rds.amazonaws.com", "ModifyDBInstance"),
    ]  # fmt: skip
    apis = []
    for source, name in names:
        rate = math.exp(rng.uniform(math.log(0.02), math.log(6.0)))  # 1 call/50 min ... 6 calls/min
        apis.append(Api("us-east-1", source, name, rate, read_only=False))
    return apis


def _rhythm(minute: int) -> float:
    """Relative level at this minute: working-day peak, quiet nights, quieter weekends (mean ~1 over a week)."""
    hour = (minute // 60) % 24
    weekday = (minute // 1440 + 4) % 7  # epoch day 0 was a Thursday
    daily = 0.55 + 0.9 * math.exp(-(((hour - 14) / 4.0) ** 2))
    return daily * (0.5 if weekday >= 5 else 1.15)


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    threshold, k, product = math.exp(-mean), 0, rng.random()
    while product > threshold:
        k += 1
        product *= rng.random()
    return k


def plan_anomalies(rng: random.Random, source_id: str, apis: list[Api], days: int) -> list[Anomaly]:
    anomalies = []
    first, last = START_MINUTE + 2 * 1440, START_MINUTE + days * 1440 - 120
    for _ in range(days - 2):
        for kind in ("burst", "burst", "error_storm", "ramp"):
            api = rng.choice(apis)
            start = rng.randrange(first, last)
            if any(a.api == api and abs(a.start - start) < 240 for a in anomalies):
                continue  # keep anomalies of one API apart, so each is scored on its own
            level = api.rate * _rhythm(start)
            if kind == "burst":
                factor, minutes = rng.choice((5.0, 8.0, 15.0, 30.0)), rng.randrange(3, 31)
                expected = factor * level
            elif kind == "error_storm":
                factor, minutes = float(rng.randrange(20, 61)), rng.randrange(5, 21)
                expected = factor
            else:
                factor, minutes = 8.0, 120
                expected = factor * level
            anomalies.append(Anomaly(source_id, kind, api, start, minutes, factor, expected))
    return anomalies


def _minute_events(
    rng: random.Random, apis: list[Api], anomalies: list[Anomaly], minute: int, drift: dict[Api, float]
) -> list[dict[str, Any]]:
    events = []
    for api in apis:
        drift[api] = min(1.4, max(0.7, drift[api] * math.exp(rng.gauss(0, 0.01))))
        mean = api.rate * _rhythm(minute) * drift[api]
        errors_storm = 0.0
        for a in anomalies:
            if a.api == api and a.start <= minute < a.start + a.minutes:
                if a.kind == "burst":
                    mean *= a.factor
                elif a.kind == "ramp":
                    progress = (minute - a.start) / a.minutes
                    mean *= 1 + (a.factor - 1) * (1 - abs(2 * progress - 1))
                else:
                    errors_storm = a.factor
        for _ in range(_poisson(rng, mean)):
            error = rng.choice(ERROR_CODES) if rng.random() < 0.03 else None
            events.append(_event(api, minute, error, rng))
        for _ in range(_poisson(rng, errors_storm)):
            events.append(_event(api, minute, "AccessDenied", rng))
    return events


def _event(api: Api, minute: int, error: str | None, rng: random.Random) -> dict[str, Any]:
    return {
        "event_time": minute * MINUTE_MS + rng.randrange(MINUTE_MS),
        "aws_region": api.region,
        "event_source": api.source,
        "event_name": api.name,
        "read_only": api.read_only,
        "management_event": True,
        "event_category": "Management",
        "error_code": error,
        "user_arn": f"arn:aws:iam::111122223333:user/{rng.choice(('ci', 'alice', 'bob', 'ops'))}",
        "user_agent": rng.choice(("aws-cli/2.15", "Boto3/1.34", "terraform/1.7")),
    }


def run(*, sources: int = 4, days: int = 9, seed: int = 0, sensitivity: Sensitivity | None = None) -> Report:
    s = sensitivity or Sensitivity()
    rng = random.Random(seed)
    insights: list[tuple[str, dict[str, Any]]] = []
    anomalies: list[Anomaly] = []
    events_total, detect_seconds = 0, 0.0
    for n in range(sources):
        source_id = f"cloudtrail-{111122223333 + n:012d}-us-east-1"
        apis = _apis(rng)
        planned = plan_anomalies(rng, source_id, apis, days)
        anomalies += planned
        state, drift = new_state(), dict.fromkeys(apis, 1.0)
        # Files hold 5 minutes and arrive out of order within the allowed lateness.
        for window in range(START_MINUTE, START_MINUTE + days * 1440, 5):
            events = [e for m in range(window, window + 5) for e in _minute_events(rng, apis, planned, m, drift)]
            rng.shuffle(events)
            events_total += len(events)
            started = time.perf_counter()
            observations = [o for o in map(observe, events) if o is not None]
            insights += [(source_id, r) for r in add_events(state, observations, source_id, s).records]
            detect_seconds += time.perf_counter() - started
    return score(insights, anomalies, sources, days, s, events_total, detect_seconds)


def _key(source_id: str, insight_type: str, api: Api, error: str = "") -> tuple[str, ...]:
    return (source_id, insight_type, api.source, api.name, error)


def score(
    insights: list[tuple[str, dict[str, Any]]],
    anomalies: list[Anomaly],
    sources: int,
    days: int,
    s: Sensitivity,
    events: int,
    seconds: float,
) -> Report:
    starts = [(sid, r) for sid, r in insights if r["insightDetails"]["state"] == "Start"]
    by_key: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for sid, r in starts:
        d = r["insightDetails"]
        minute = int(_epoch_minute(r["eventTime"]))
        by_key[(sid, d["insightType"], d["eventSource"], d["eventName"], d.get("errorCode", ""))].append(minute)
    scored = [a for a in anomalies if a.expected_per_minute >= s.min_volume]
    found: dict[str, list[bool]] = defaultdict(list)
    delays, matched = [], set()
    for a in scored:
        error = "AccessDenied" if a.kind == "error_storm" else ""
        key = _key(a.source_id, a.insight_type, a.api, error)
        hits = [m for m in by_key.get(key, []) if a.start <= m < a.start + a.minutes]
        found[a.kind].append(bool(hits))
        if hits:
            if a.kind == "burst":
                delays.append(min(hits) - a.start)
            matched.update((key, m) for m in hits)
    all_insights = [(k, m) for k, minutes in by_key.items() for m in minutes]
    # An insight of any kind on an API during an anomaly injected on that API is true: a burst also raises its
    # errors, a storm of failed writes also raises the write rate, and an anomaly below the minimum volume is
    # still real. Only insights outside every injected anomaly are false.
    windows = defaultdict(list)
    for a in anomalies:
        windows[(a.source_id, a.api.source, a.api.name)].append((a.start, a.start + a.minutes))
    true = [(k, m) for k, m in all_insights if any(lo <= m < hi for lo, hi in windows[(k[0], k[2], k[3])])]
    false = len(all_insights) - len(true)
    delays.sort()
    return Report(
        sources=sources,
        days=days,
        events=events,
        insights=len(all_insights),
        true_insights=len(true),
        precision=round(len(true) / len(all_insights), 4) if all_insights else 1.0,
        recall={kind: round(sum(v) / len(v), 4) for kind, v in sorted(found.items())},
        found={kind: f"{sum(v)}/{len(v)}" for kind, v in sorted(found.items())},
        delay_minutes_p50=delays[len(delays) // 2] if delays else None,
        delay_minutes_p95=delays[min(len(delays) - 1, int(0.95 * len(delays)))] if delays else None,
        delay_minutes_max=delays[-1] if delays else None,
        false_per_source_day=round(false / (sources * days), 4),
        below_min_volume=len(anomalies) - len(scored),
        seconds=round(seconds, 2),
        events_per_second=round(events / seconds) if seconds else 0,
        sensitivity=asdict(s),
    )


def _epoch_minute(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()) // 60


def format_report(report: Report) -> str:
    lines = [
        f"insights bench: {report.sources} sources x {report.days} days, {report.events:,} events "
        f"({report.events_per_second:,} events/s through observe + add_events)",
        f"  insights started: {report.insights} ({report.true_insights} on injected anomalies)",
        f"  precision: {report.precision:.3f}",
        *(f"  recall {kind}: {report.recall[kind]:.3f} ({report.found[kind]})" for kind in report.recall),
        f"  burst detection delay (event-time minutes): p50 {report.delay_minutes_p50}, "
        f"p95 {report.delay_minutes_p95}, max {report.delay_minutes_max}"
        f" (+ allowed lateness {report.sensitivity['lateness_minutes']} min before the decision)",
        f"  false insights per source per day: {report.false_per_source_day}",
        f"  anomalies below the minimum volume (not scored): {report.below_min_volume}",
    ]
    return "\n".join(lines)
