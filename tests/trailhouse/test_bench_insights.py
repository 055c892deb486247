"""The insights bench's scoring (pure), and one short run of the whole bench."""

from datetime import UTC, datetime

from streams.insights import CALL_RATE, Sensitivity
from trailhouse.bench_insights import START_MINUTE, Anomaly, Api, format_report, run, score

SOURCE = "cloudtrail-111122223333-us-east-1"
API = Api("us-east-1", "iam.amazonaws.com", "CreateAccessKey", 1.0, read_only=False)


def _start(minute: int, api: Api = API) -> tuple[str, dict]:
    when = datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    details = {"state": "Start", "insightType": CALL_RATE, "eventSource": api.source, "eventName": api.name}
    return SOURCE, {"eventTime": when, "insightDetails": details}


def test_hits_misses_delay_and_false_insights_are_scored():
    burst = Anomaly(SOURCE, "burst", API, START_MINUTE + 100, 10, 8.0, 8.0)
    missed = Anomaly(SOURCE, "burst", API, START_MINUTE + 500, 10, 8.0, 8.0)
    too_small = Anomaly(SOURCE, "burst", API, START_MINUTE + 900, 10, 5.0, 5.0)
    insights = [_start(START_MINUTE + 102), _start(START_MINUTE + 700), _start(START_MINUTE + 905)]
    report = score(insights, [burst, missed, too_small], 1, 2, Sensitivity(min_volume=6), 1000, 1.0)
    assert report.recall == {"burst": 0.5} and report.found == {"burst": "1/2"}
    assert report.delay_minutes_p50 == 2 and report.delay_minutes_max == 2
    assert report.below_min_volume == 1, "a burst below the minimum volume is not scored"
    assert report.true_insights == 2, "an insight during an unscored anomaly is still true"
    assert report.precision == round(2 / 3, 4) and report.false_per_source_day == 0.5


def test_a_short_run_reports_every_figure():
    report = run(sources=1, days=8, seed=3)
    assert report.events > 100_000 and report.insights > 0
    assert set(report.recall) >= {"burst"} and report.delay_minutes_p50 is not None
    text = format_report(report)
    assert "precision" in text and "recall burst" in text and "false insights per source per day" in text
