"""`trailhouse bench pipeline` at a tiny size: every section is reported, counts agree, every event is searchable."""

import json
from pathlib import Path

import pytest

from tests.e2e.cli import Trailhouse
from trailhouse.bench_report import TOGETHER, TOGETHER_OF, TOGETHER_SAMPLED

pytestmark = pytest.mark.e2e

EVENTS = 2000


def test_bench_pipeline_reports_every_section_with_consistent_counts(tmp_path):
    report_file = tmp_path / "bench.json"
    # A relative data directory, as the default `.trailhouse` is: the bench's sources must still name absolute folders.
    trailhouse = Trailhouse(Path("data"), {"TRAILHOUSE_LOG_LEVEL": "WARNING"})
    done = trailhouse(
        "bench",
        "pipeline",
        "--events",
        str(EVENTS),
        "--freshness-seconds",
        "3",
        "--freshness-rate",
        "200",
        "--json",
        str(report_file),
        timeout=120,
        cwd=tmp_path,
    )

    report = json.loads(report_file.read_text())
    (run,) = report["runs"]
    assert run["events"] == EVENTS and run["files"] > 0
    assert run["baseline_chdb"]["events"] == EVENTS
    stages = run["stages"]
    assert stages["poll"]["events"] == EVENTS
    assert 0 < stages["worker"]["events"] < EVENTS  # one message of its input warmed it up, unmeasured
    assert stages["sink"]["events"] == EVENTS - 1  # likewise one event
    assert run["end_to_end"]["events"] == EVENTS
    for figure in (run["baseline_chdb"], *stages.values(), run["end_to_end"]):
        assert figure["events_per_s"] > 0
    assert run["end_to_end"]["vs_baseline"] > 0

    freshness = report["freshness"]
    assert freshness["files"] > 0 and freshness["unsearchable_files"] == 0
    assert 0 < freshness["p50_seconds"] <= freshness["p95_seconds"] <= freshness["p99_seconds"]
    assert run["searchable"] == run["expected_searchable"] == 20 + EVENTS + freshness["events"]
    peaks = run["peak_rss_mb"]
    assert all(mb and mb > 0 for mb in peaks.values())
    # The names the bench measures under are the ones the total adds: were one renamed, the total would vanish.
    assert peaks[TOGETHER] == pytest.approx(sum(peaks[name] for name in TOGETHER_OF), abs=0.2)
    # Sampled at the same moments, the stages held at least the level of the largest of them while it worked, and
    # never more than the sum of their peaks (the kernel reads VmHWM approximately: a little slack).
    busiest = max(run["median_rss_mb"][f"{stage} (end to end)"] for stage in ("worker", "sink"))
    assert busiest <= peaks[TOGETHER_SAMPLED], (busiest, peaks[TOGETHER_SAMPLED])
    assert peaks[TOGETHER_SAMPLED] <= peaks[TOGETHER] * 1.02, (peaks[TOGETHER_SAMPLED], peaks[TOGETHER])
    halves = run["peak_rss_at_half_input_mb"]  # None where a stage did its second half between two polls
    assert set(halves) == {"worker (alone)", "sink (alone)"}
    for name, half in halves.items():
        assert half is None or 0 < half <= peaks[name], (name, half, peaks[name])
    medians = run["median_rss_mb"]  # sampled while each worked: never above its peak
    assert set(medians) == {"worker (alone)", "sink (alone)", "worker (end to end)", "sink (end to end)"}
    for name, median in medians.items():
        assert 0 < median <= peaks[name], (name, median, peaks[name])

    for line in (
        "baseline: chDB",
        "poll alone",
        "worker alone",
        "sink alone",
        "end to end",
        "freshness:",
        TOGETHER,
        TOGETHER_SAMPLED,
    ):
        assert line in done.stdout
