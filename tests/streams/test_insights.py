"""The Insights statistic on constructed series, Start/End pairing, attributions and determinism."""

import json
import random

from streams.insights import (
    CALL_RATE,
    ERROR_RATE,
    MINUTE_MS,
    Observation,
    Sensitivity,
    add_events,
    new_state,
    observe,
    poisson_tail,
)

SOURCE = "cloudtrail-111122223333-us-east-1"
KEY = f"{CALL_RATE}|us-east-1|iam.amazonaws.com|CreateAccessKey|"
T0 = 29_000_000  # an epoch minute (Thursday 2025-02-20)
S = Sensitivity(min_history_minutes=12 * 60, lateness_minutes=10)


def _obs(
    minute: int,
    key: str = KEY,
    arn: str = "arn:aws:iam::111122223333:user/ci",
    agent: str = "aws-cli/2",
    error: str = "",
) -> Observation:
    return Observation(minute, (key,), (arn, agent, error))


def _series(counts: dict[int, int], **kw) -> list[Observation]:
    return [_obs(minute, **kw) for minute, n in sorted(counts.items()) for _ in range(n)]


def _run(observations: list[Observation], *, batch_minutes: int = 5, s: Sensitivity = S) -> list[dict]:
    """Feed observations as the worker does: in batches (files), then push the watermark past the end."""
    state, records = new_state(), []
    by_batch: dict[int, list[Observation]] = {}
    for o in observations:
        by_batch.setdefault(o.minute // batch_minutes, []).append(o)
    for batch in sorted(by_batch):
        records += add_events(state, by_batch[batch], SOURCE, s).records
    last = max(o.minute for o in observations)
    records += add_events(state, [_obs(last + s.lateness_minutes + 30, key="flush|x|y|z|")], SOURCE, s).records
    return records


def _flat(minutes: int, per_minute: int, start: int = T0) -> dict[int, int]:
    return {start + m: per_minute for m in range(minutes)}


def _starts(records):
    return [r for r in records if r["insightDetails"]["state"] == "Start"]


def test_a_flat_series_gives_no_insight():
    assert _run(_series(_flat(3 * 1440, 2))) == []


def test_a_burst_starts_and_ends_one_insight_with_aws_shape():
    counts = _flat(2 * 1440, 2)
    burst = T0 + 2 * 1440 - 600
    counts.update({burst + m: 30 for m in range(5)})
    records = _run(_series(counts))
    assert [r["insightDetails"]["state"] for r in records] == ["Start", "End"]
    start, end = records
    assert start["sharedEventID"] == end["sharedEventID"] and start["eventID"] != end["eventID"]
    assert start["eventType"] == "AwsCloudTrailInsight" and start["recipientAccountId"] == "111122223333"
    details = start["insightDetails"]
    assert (details["eventSource"], details["eventName"], details["insightType"]) == (
        "iam.amazonaws.com",
        "CreateAccessKey",
        CALL_RATE,
    )
    stats = details["insightContext"]["statistics"]
    assert stats["insight"]["average"] == 30 and 1.9 <= stats["baseline"]["average"] <= 2.1
    assert stats["insightDuration"] == 1
    end_stats = end["insightDetails"]["insightContext"]["statistics"]
    assert (end_stats["insightDuration"], end_stats["insight"]["average"]) == (5, 30)
    assert start["eventTime"] == _iso(burst)
    assert end["eventTime"] == _iso(burst + 5)


def test_seasonal_peaks_are_not_insights_but_a_burst_at_night_is():
    counts = {}
    for m in range(3 * 1440):
        hour = ((T0 + m) // 60) % 24
        counts[T0 + m] = 12 if 9 <= hour < 17 else 1  # a working day of 12/min, nights of 1/min
    night = next(T0 + m for m in range(2 * 1440, 3 * 1440) if ((T0 + m) // 60) % 24 == 2)
    counts.update({night + m: 12 for m in range(10)})
    day_of_history = Sensitivity(min_history_minutes=24 * 60)
    starts = _starts(_run(_series(counts), s=day_of_history))
    assert [_minute(r) for r in starts] == [night], "daytime 12/min is normal, 12/min at 2 a.m. is not"
    # With only 12 hours of nights behind it, the first working day is itself unusual (as the docstring says).
    assert _minute(_starts(_run(_series(counts)))[0]) == T0 + 12 * 60


def test_a_sparse_api_needs_the_minimum_volume():
    counts = {T0 + m: 1 for m in range(0, 2 * 1440, 180)}  # one call every three hours
    spike = T0 + 2 * 1440 - 100
    small = dict(counts) | {spike: 6}
    assert _starts(_run(_series(small))) == [], "6 calls is below the minimum volume"
    large = dict(counts) | {spike: 12}
    assert [_minute(r) for r in _starts(_run(_series(large)))] == [spike]


def test_a_slow_ramp_is_caught_when_it_crosses_the_band():
    counts = _flat(2 * 1440, 3)
    ramp = T0 + 2 * 1440 - 300
    counts.update({ramp + m: 3 + (27 * m) // 60 for m in range(60)})  # 3/min to 30/min over an hour
    [start] = _starts(_run(_series(counts)))
    assert ramp + 20 <= _minute(start) < ramp + 60


def test_nothing_is_flagged_before_the_minimum_history():
    counts = _flat(600, 2) | {T0 + 300 + m: 40 for m in range(3)}
    assert _run(_series(counts)) == []


def test_error_storms_are_error_rate_insights_with_the_error_code_and_attributions():
    key = f"{ERROR_RATE}|us-east-1|s3.amazonaws.com|PutBucketPolicy|AccessDenied"
    counts = {T0 + m: 1 for m in range(0, 2 * 1440, 30)}
    storm = T0 + 2 * 1440 - 200
    observations = _series(counts, key=key, error="AccessDenied")
    attackers = [f"arn:aws:iam::111122223333:user/u{i}" for i in range(8)]
    for m in range(6):
        for i in range(25):
            observations.append(
                _obs(
                    storm + m,
                    key=key,
                    arn=attackers[i % 8] if i < 16 else attackers[0],
                    agent="curl/8",
                    error="AccessDenied",
                )
            )
    start, end = _run(observations)
    details = end["insightDetails"]
    assert (details["insightType"], details["errorCode"]) == (ERROR_RATE, "AccessDenied")
    arns = next(a for a in details["insightContext"]["attributions"] if a["attribute"] == "userIdentityArn")
    assert (
        arns["insight"][0] == {"value": attackers[0], "average": round((6 * 9 + 0) / 6 + 0, 6)}
        or arns["insight"][0]["value"] == attackers[0]
    )
    assert len(arns["insight"]) == 6 and arns["insight"][-1]["value"] == "Other", "top 5, the rest as Other"
    assert round(sum(a["average"] for a in arns["insight"]), 6) == 25.0
    agents = next(a for a in details["insightContext"]["attributions"] if a["attribute"] == "userAgent")
    assert agents["insight"] == [{"value": "curl/8", "average": 25.0}]
    assert agents["baseline"][0]["value"] == "aws-cli/2"


def test_replaying_or_reordering_within_the_lateness_gives_the_same_insights():
    rng = random.Random(3)
    counts = _flat(2 * 1440, 2)
    counts.update({T0 + 2 * 1440 - 500 + m: 25 for m in range(4)})
    observations = _series(counts)
    first = _run(observations)
    assert first == _run(observations), "replay"
    shuffled = list(observations)
    # swap events at most 8 minutes apart (the lateness is 10)
    for i in range(len(shuffled) - 1):
        j = min(len(shuffled) - 1, i + rng.randrange(0, 20))
        if abs(shuffled[i].minute - shuffled[j].minute) <= 8:
            shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
    assert _run(shuffled, batch_minutes=3) == first


def test_events_later_than_the_lateness_are_counted_and_ignored():
    state = new_state()
    add_events(state, [_obs(T0 + 100)], SOURCE, S)
    add_events(state, [_obs(T0 + 80), _obs(T0 + 95)], SOURCE, S)
    assert state["late"] == 1


def test_only_management_writes_and_errors_are_counted():
    base = {
        "event_time": T0 * MINUTE_MS,
        "aws_region": "us-east-1",
        "event_source": "s3.amazonaws.com",
        "event_name": "GetObject",
        "management_event": True,
        "event_category": "Management",
        "user_arn": None,
        "user_agent": None,
    }
    assert observe(base | {"read_only": True, "error_code": None}) is None
    assert observe(base | {"read_only": True, "error_code": "AccessDenied"}).keys == (
        f"{ERROR_RATE}|us-east-1|s3.amazonaws.com|GetObject|AccessDenied",
    )
    assert observe(base | {"read_only": False, "error_code": None, "event_category": "Data"}) is None
    assert observe(base | {"read_only": False, "error_code": None}).keys == (
        f"{CALL_RATE}|us-east-1|s3.amazonaws.com|GetObject|",
    )


def test_poisson_tail():
    assert poisson_tail(0, 2.0) == 1.0
    assert abs(poisson_tail(1, 2.0) - (1 - 2.718281828**-2)) < 1e-9
    assert poisson_tail(30, 2.0) < 1e-15
    assert poisson_tail(5, 0.0) == 0.0


def _minute(record) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00")).timestamp()) // 60


def _iso(minute: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_records_are_json():
    counts = _flat(2 * 1440, 2) | {T0 + 2 * 1440 - 600 + m: 30 for m in range(3)}
    for record in _run(_series(counts)):
        assert json.loads(json.dumps(record)) == record


def test_a_batch_changes_only_the_apis_it_touched_and_forgets_apis_silent_for_a_week():
    other = KEY.replace("CreateAccessKey", "DeleteUser")
    state = new_state()
    first = add_events(state, [_obs(T0), _obs(T0, key=other), _obs(T0 + 20)], SOURCE, S)
    assert first.changed == {KEY, other}
    later = add_events(state, [_obs(T0 + 40), _obs(T0 + 41)], SOURCE, S)
    assert later.changed == {KEY}, "the other API's quiet minutes wait until it is touched again"
    assert state["apis"][other]["next"] == T0 + 1

    # Its quiet minutes are closed when it is next touched: the same baseline as if closed one by one.
    touched = add_events(state, [_obs(T0 + 100, key=other), _obs(T0 + 115)], SOURCE, S)
    assert other in touched.changed
    assert state["apis"][other]["week"] == (2, 101, 2), "2 calls in 101 minutes fed, minute by minute"

    week_later = T0 + 8 * 1440
    gone = add_events(state, [_obs(week_later)], SOURCE, S)
    assert gone.forgotten == {KEY, other} and state["apis"] == {}
    add_events(state, [_obs(week_later + 15)], SOURCE, S)
    assert state["apis"][KEY]["first"] == week_later, "back with a new history (and a new wait for enough of it)"


def test_a_burst_does_not_deafen_the_same_hour_of_the_following_days():
    """The variance is robust: one burst's squares are clipped, so a smaller burst at the same hour days later
    still stands out (unclipped, the first made the hour's standard deviation ~6 calls a minute)."""
    counts = _flat(8 * 1440, 2)
    first, second = T0 + 2 * 1440 + 600, T0 + 7 * 1440 + 600
    counts.update({first + m: 30 for m in range(20)})
    counts.update({second + m: 20 for m in range(5)})
    assert [_minute(r) for r in _starts(_run(_series(counts)))] == [first, second]


def test_quiet_minutes_fed_an_hour_at_a_time_equal_feeding_them_one_by_one():
    from streams.insights import _EMPTY, _feed_baseline, _feed_quiet, _new_api

    rng = random.Random(3)
    by_minute, by_hour = _new_api(T0), _new_api(T0)
    minute = T0
    for _ in range(40):  # busy minutes, then quiet runs of up to ~2 days (past the week's expiry in all)
        count = rng.randint(1, 30)
        for api in (by_minute, by_hour):
            _feed_baseline(api, minute, count, _EMPTY, clip=12)
        quiet = rng.randint(0, 3000)
        for m in range(minute + 1, minute + 1 + quiet):
            _feed_baseline(by_minute, m, 0, _EMPTY)
        _feed_quiet(by_hour, minute + 1, minute + 1 + quiet)
        minute += 1 + quiet
    assert minute - T0 > 8 * 24 * 60
    assert json.loads(json.dumps(by_hour)) == json.loads(json.dumps(by_minute))


def test_the_week_is_a_ring_of_fixed_size_with_the_sums_of_a_map_of_hours():
    """An API keeps its hours in a ring of HOURS_KEPT slots, a fixed size whatever its history. It must hold what
    a map of the last week's hours holds: each hour's totals and the week's and hour-of-day sums, across gaps
    shorter and longer than a week."""
    from streams.insights import HOURS_KEPT, _add_to_hour, _hour, _new_api

    rng = random.Random(5)
    api, hours = _new_api(T0), {}
    hour = T0 // 60
    for _ in range(600):
        hour += rng.choice([0, 1, 1, 1, 2, 30, 200])
        added = (rng.randint(0, 50), rng.randint(1, 60), rng.randint(0, 2500))
        _add_to_hour(api, hour, added)
        hours = {h: t for h, t in hours.items() if h > hour - HOURS_KEPT}
        hours[hour] = tuple(a + b for a, b in zip(hours.get(hour, (0, 0, 0)), added, strict=True))

        assert len(api["hours"]) == 3 * HOURS_KEPT
        assert [_hour(api, h) for h in range(hour - HOURS_KEPT - 2, hour + 2)] == [
            hours.get(h, (0, 0, 0)) for h in range(hour - HOURS_KEPT - 2, hour + 2)
        ]
        assert tuple(api["week"]) == tuple(map(sum, zip(*hours.values(), strict=True)))
        by_hour_of_day = {
            slot: tuple(map(sum, zip(*(t for h, t in hours.items() if h % 24 == slot), strict=True)))
            for slot in {h % 24 for h in hours}
        }
        assert {int(slot): tuple(t) for slot, t in api["hod"].items() if any(t)} == by_hour_of_day


def test_an_api_stored_by_a_worker_before_the_ring_keeps_its_hours():
    from streams.insights import HOURS_KEPT, _add_to_hour, _hour, baseline, upgraded_api

    stored = {  # as a Faust table's changelog gives it back: JSON, so tuples are lists
        "first": 60_000,
        "next": 60_121,
        "last_active": 60_100,
        "hours": {"1000": [40, 60, 50], "1001": [3, 60, 9], "1002": [0, 1, 0]},
        "week": [43, 121, 59],
        "hod": {"16": [40, 60, 50], "17": [3, 60, 9], "18": [0, 1, 0]},
        "fed": 121,
        "baseline_attr": {"userIdentityArn": {}, "userAgent": {}, "errorCode": {}},
        "insight": None,
    }
    api = upgraded_api(stored)

    assert api["newest"] == 1002 and len(api["hours"]) == 3 * HOURS_KEPT
    assert [_hour(api, h) for h in (999, 1000, 1001, 1002)] == [(0, 0, 0), (40, 60, 50), (3, 60, 9), (0, 1, 0)]
    # Hour 1002's hour of day is new, so the busiest seen stands in: hour 1000's 40 calls in 60 minutes.
    assert baseline(api, 1002 * 60 + 5).rate == 40 / 60
    _add_to_hour(api, 1000 + HOURS_KEPT, (1, 60, 1))  # a week on: hour 1000 leaves the week
    assert tuple(api["week"]) == (43 - 40 + 1, 121 - 60 + 60, 59 - 50 + 1)
    assert upgraded_api(api) is api, "today's form is left as it is"
