"""The bench report's math and rendering: percentiles, ratios, growth, table and JSON."""

import json
import re

import pytest

from trailhouse.bench_report import (
    TOGETHER,
    TOGETHER_SAMPLED,
    Freshness,
    PipelineBench,
    SizeRun,
    Throughput,
    percentile,
    ratio,
)


def _run(
    events: int,
    *,
    e2e_seconds: float = 10.0,
    worker_rss: float = 100.0,
    worker_half: float | None = 100.0,
    sink_median: float = 300.0,
) -> SizeRun:
    return SizeRun(
        events=events,
        files=events // 10,
        span_hours=24.0 * events / 1000,
        baseline=Throughput(events, 1.0),
        stages={"poll": Throughput(events, 2.0), "worker": Throughput(events, 5.0), "sink": Throughput(events, 4.0)},
        end_to_end=Throughput(events, e2e_seconds),
        startup_seconds=7.5,
        peak_rss_mb={"worker (end to end)": worker_rss, "sink (end to end)": 400.0, "worker (alone)": worker_rss},
        searchable=events + 20,
        expected_searchable=events + 20,
        peak_rss_at_half_mb={"worker (alone)": worker_half},
        median_rss_mb={"sink (end to end)": sink_median},
    )


def test_percentile_interpolates_between_closest_ranks():
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_unknown_and_out_of_range_is_an_error():
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_ratio_is_unknown_without_a_whole():
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(None, 4.0) is None
    assert ratio(1.0, 0.0) is None


def test_throughput_per_second_and_end_to_end_against_the_baseline():
    assert Throughput(1000, 4.0).per_second == 250.0
    assert Throughput(1000, 0.0).per_second is None
    run = _run(1000, e2e_seconds=4.0)
    assert run.end_to_end_vs_baseline == pytest.approx(0.25)


def test_rss_growth_compares_the_largest_size_with_the_smallest():
    report = PipelineBench([_run(1000, worker_rss=100.0), _run(4000, worker_rss=150.0)], None, 3, 2)
    assert report.rss_growth() == {"worker (end to end)": 1.5, "sink (end to end)": 1.0, "worker (alone)": 1.5}
    assert PipelineBench([_run(1000)], None, 3, 2).rss_growth() == {}


def test_the_stages_together_are_the_sum_of_their_peaks_then_their_highest_sampled_sum_and_grow_as_those():
    def with_poller(run: SizeRun, poll_mb: float, sampled_mb: float) -> SizeRun:
        run.peak_rss_mb["poll (end to end)"] = poll_mb
        run.together_sampled_mb = sampled_mb
        run.peak_rss_mb["broker (end to end)"] = 90.0
        return run

    small = with_poller(_run(1000, worker_rss=100.0), 100.0, 520.0)
    large = with_poller(_run(4000, worker_rss=150.0), 100.0, 546.0)
    assert small.peak_rss_with_total_mb[TOGETHER] == 600.0  # 100 + 100 + 400: not the worker alone, nor the broker
    assert list(small.peak_rss_with_total_mb)[-2:] == [TOGETHER, TOGETHER_SAMPLED]  # the stages together last
    report = PipelineBench([small, large], None, 3, 2)
    assert report.rss_growth()[TOGETHER] == round(650 / 600, 2)
    assert report.rss_growth()[TOGETHER_SAMPLED] == 1.05
    assert report.to_json()["runs"][1]["peak_rss_mb"][TOGETHER] == 650.0
    assert report.to_json()["runs"][1]["peak_rss_mb"][TOGETHER_SAMPLED] == 546.0
    text = report.render()
    assert re.search(r"peak RSS poll \+ worker \+ sink\s+600 MB\s+650 MB\n", text)
    assert re.search(r"peak RSS poll \+ worker \+ sink at one moment\s+520 MB\s+546 MB\n", text)
    assert TOGETHER not in _run(1000).peak_rss_with_total_mb  # no poller measured: no sum that would look smaller
    assert TOGETHER not in _run(1000).peak_rss_mb  # the measured figures are left as they were
    assert TOGETHER_SAMPLED not in _run(1000).peak_rss_with_total_mb  # not sampled: no row


def test_growth_in_the_second_half_compares_the_largest_run_s_end_with_its_middle():
    small, large = _run(1000, worker_rss=100.0, worker_half=90.0), _run(4000, worker_rss=150.0, worker_half=120.0)
    assert PipelineBench([small, large], None, 3, 2).rss_growth_in_second_half() == {"worker (alone)": 1.25}
    unsampled = _run(4000, worker_half=None)  # the stage did its second half between two polls
    assert PipelineBench([unsampled], None, 3, 2).rss_growth_in_second_half() == {"worker (alone)": None}


def test_a_peak_that_grows_over_a_median_that_does_not_is_told_apart():
    small, large = _run(1000, sink_median=300.0), _run(4000, sink_median=303.0)
    large.peak_rss_mb["sink (end to end)"] = 480.0  # one moment: an insert meeting a merge
    report = PipelineBench([small, large], None, 3, 2)
    assert report.rss_growth()["sink (end to end)"] == 1.2
    assert report.median_rss_growth() == {"sink (end to end)": 1.01}
    assert report.to_json()["median_rss_growth"] == {"sink (end to end)": 1.01}
    assert report.to_json()["runs"][1]["median_rss_mb"] == {"sink (end to end)": 303.0}
    text = report.render()
    assert re.search(
        r"peak RSS sink \(end to end\)\s+400 MB\s+480 MB\n\s+median while it worked\s+300 MB\s+303 MB", text
    )
    assert "median RSS at 4N / at N: sink (end to end) 1.01x" in text
    assert PipelineBench([small], None, 3, 2).median_rss_growth() == {}


def test_freshness_counts_files_that_never_became_searchable():
    fresh = Freshness(target_events_per_s=1000, seconds=30, files=4, events=8000, latencies=[1.0, 2.0, 3.0])
    assert fresh.unsearchable_files == 1
    document = fresh.to_json()
    assert document["p50_seconds"] == 2.0 and document["max_seconds"] == 3.0


def test_json_and_table_carry_every_section():
    fresh = Freshness(target_events_per_s=1000, seconds=30, files=3, events=6000, latencies=[1.0, 1.5, 2.0])
    report = PipelineBench([_run(1000), _run(4000, worker_half=80.0)], fresh, 3, 2)
    document = json.loads(json.dumps(report.to_json()))
    first = document["runs"][0]
    assert set(first["stages"]) == {"poll", "worker", "sink"}
    assert first["baseline_chdb"]["events_per_s"] == 1000.0
    assert first["end_to_end"]["vs_baseline"] == 0.1
    assert document["freshness"]["p95_seconds"] == pytest.approx(1.95)
    assert document["rss_growth"]["worker (end to end)"] == 1.0
    assert document["runs"][1]["peak_rss_at_half_input_mb"] == {"worker (alone)": 80.0}
    assert document["rss_growth_in_second_half"] == {"worker (alone)": 1.25}
    assert [run["span_hours"] for run in document["runs"]] == [24.0, 96.0]

    text = report.render()
    for expected in (
        "N=1,000",
        "N=4,000",
        "baseline: chDB",
        "poll alone",
        "worker alone",
        "sink alone",
        "end to end (warm)",
        "10%",
        "peak RSS worker (end to end)",
        "peak RSS at 4N / at N",
        "peak RSS at the end / at half of the input, N=4,000: worker (alone) 1.25x",
        "freshness: 3 files",
        "p95 1.95 s",
        "1,020 / 1,020",
    ):
        assert expected in text, expected
    assert re.search(r"events per file\s+10\s+10\s*$", text, re.MULTILINE)
    assert re.search(r"hours of events\s+24\s+96\s*$", text, re.MULTILINE)
    assert re.search(r"peak RSS worker \(alone\)\s+100 MB\s+100 MB\n\s+at half of its input\s+100 MB\s+80 MB", text)
