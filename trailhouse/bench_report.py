"""The report of `trailhouse bench pipeline`: figures, percentiles, ratios, and their table and JSON. Pure, no I/O.

trailhouse/bench_pipeline.py measures; this module only holds what was measured and says it. Nothing here
asserts a goal: ratios and growth are reported for the reader to judge.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

STAGES = ("poll", "worker", "sink")
# The goal's "all stages together", end to end, bracketed by two figures: the sum of the stages' peaks (at least
# the peak of the sum: the peaks need not coincide), and the highest sum of their resident sizes sampled at the
# same moments (at most the peak of the sum: a moment can fall between two samples). The broker is left out: in
# production it is Kafka, not ours to size.
TOGETHER_OF = ("poll (end to end)", "worker (end to end)", "sink (end to end)")
TOGETHER = "poll + worker + sink"
TOGETHER_SAMPLED = "poll + worker + sink at one moment"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks; None without values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(part: float | None, whole: float | None) -> float | None:
    """part / whole, or None when either is unknown or the whole is 0."""
    if part is None or not whole:
        return None
    return part / whole


@dataclass(frozen=True)
class Throughput:
    """`events` handled in `seconds` of wall time."""

    events: int
    seconds: float

    @property
    def per_second(self) -> float | None:
        return self.events / self.seconds if self.seconds > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {"events": self.events, "seconds": round(self.seconds, 3), "events_per_s": _round(self.per_second)}


@dataclass
class SizeRun:
    """Everything measured at one input size: the chDB-native baseline, each stage alone, and end to end."""

    events: int
    files: int
    span_hours: float  # of event time the files cover
    baseline: Throughput
    stages: dict[str, Throughput]  # poll, worker, sink: each alone on input that is already there
    end_to_end: Throughput  # every stage running, warm, from the files to everything searchable
    startup_seconds: float  # the pipeline's processes started, joined their groups and passed a first file
    peak_rss_mb: dict[str, float | None]  # per stage (and the broker), the process's high-water mark
    searchable: int  # events found in ClickHouse afterwards (end to end + freshness trickle + warm-up)
    expected_searchable: int
    together_sampled_mb: float | None = None  # TOGETHER_SAMPLED, end to end
    # per stage run alone (worker, sink): its high-water mark when it had committed half of its input
    peak_rss_at_half_mb: dict[str, float | None] = field(default_factory=dict)
    # worker and sink, alone and end to end: the median of their RSS sampled while they worked
    median_rss_mb: dict[str, float | None] = field(default_factory=dict)

    @property
    def end_to_end_vs_baseline(self) -> float | None:
        return ratio(self.end_to_end.per_second, self.baseline.per_second)

    @property
    def peak_rss_with_total_mb(self) -> dict[str, float | None]:
        """peak_rss_mb with the stages together last: the sum of TOGETHER_OF's peaks under TOGETHER (when every
        one is known), then TOGETHER_SAMPLED (when measured)."""
        figures = dict(self.peak_rss_mb)
        peaks = [mb for name in TOGETHER_OF if (mb := self.peak_rss_mb.get(name)) is not None]
        if len(peaks) == len(TOGETHER_OF):
            figures[TOGETHER] = sum(peaks)
        if self.together_sampled_mb is not None:
            figures[TOGETHER_SAMPLED] = self.together_sampled_mb
        return figures

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "files": self.files,
            "span_hours": round(self.span_hours, 1),
            "baseline_chdb": self.baseline.to_json(),
            "stages": {name: t.to_json() for name, t in self.stages.items()},
            "end_to_end": self.end_to_end.to_json()
            | {
                "vs_baseline": _round(self.end_to_end_vs_baseline, 3),
                "startup_seconds": round(self.startup_seconds, 2),
            },
            "peak_rss_mb": {name: _round(mb) for name, mb in self.peak_rss_with_total_mb.items()},
            "peak_rss_at_half_input_mb": {name: _round(mb) for name, mb in self.peak_rss_at_half_mb.items()},
            "median_rss_mb": {name: _round(mb) for name, mb in self.median_rss_mb.items()},
            "searchable": self.searchable,
            "expected_searchable": self.expected_searchable,
        }


@dataclass
class Freshness:
    """A steady trickle of new files with the pipeline running: seconds from each file's write to searchable."""

    target_events_per_s: float
    seconds: float
    files: int
    events: int
    latencies: list[float] = field(default_factory=list)  # one per file that became searchable
    poll_interval: float = 1.0

    @property
    def unsearchable_files(self) -> int:
        return self.files - len(self.latencies)

    def to_json(self) -> dict[str, Any]:
        return {
            "target_events_per_s": self.target_events_per_s,
            "seconds": round(self.seconds, 1),
            "poll_interval": self.poll_interval,
            "files": self.files,
            "events": self.events,
            "unsearchable_files": self.unsearchable_files,
            **{f"p{q}_seconds": _round(percentile(self.latencies, q), 3) for q in (50, 95, 99)},
            "max_seconds": _round(max(self.latencies, default=None), 3),
        }


@dataclass
class PipelineBench:
    runs: list[SizeRun]
    freshness: Freshness | None
    accounts: int
    cpus: int

    def rss_growth(self) -> dict[str, float | None]:
        """Per process, peak RSS at the largest size / at the smallest (1.0 = flat); empty with a single size."""
        return self._growth(lambda run: run.peak_rss_with_total_mb)

    def median_rss_growth(self) -> dict[str, float | None]:
        """Per worker and sink process, median RSS at the largest size / at the smallest: a peak that grows while
        this stays near 1.0 comes from single moments, not from a level that climbs with N."""
        return self._growth(lambda run: run.median_rss_mb)

    def _growth(self, figures: Callable[[SizeRun], dict[str, float | None]]) -> dict[str, float | None]:
        if len(self.runs) < 2:
            return {}
        small, large = figures(self.runs[0]), figures(self.runs[-1])
        return {name: _round(ratio(large.get(name), small.get(name)), 2) for name in small}

    def rss_growth_in_second_half(self) -> dict[str, float | None]:
        """Per stage run alone, in the largest run: peak RSS at the end / at half of its input (1.0 = it stopped
        growing within the run; between sizes, a higher ratio then comes from bounds a smaller run did not fill)."""
        largest = self.runs[-1]
        return {
            name: _round(ratio(largest.peak_rss_mb.get(name), half), 2)
            for name, half in largest.peak_rss_at_half_mb.items()
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "accounts": self.accounts,
            "cpus": self.cpus,
            "runs": [run.to_json() for run in self.runs],
            "freshness": self.freshness.to_json() if self.freshness else None,
            "rss_growth": self.rss_growth(),
            "median_rss_growth": self.median_rss_growth(),
            "rss_growth_in_second_half": self.rss_growth_in_second_half(),
        }

    def render(self) -> str:
        """The report as text tables, one column per input size."""
        header = ["", *(f"N={run.events:,}" for run in self.runs)]
        rows: list[list[str]] = [
            ["files", *(f"{run.files:,}" for run in self.runs)],
            ["  hours of events", *(f"{run.span_hours:,.0f}" for run in self.runs)],
            # The same at 4N (4x the hours, same rate): the stages' buffers hold chunks of files, so larger files
            # (a busier trail, or --span-hours) mean more memory up to raw_chunk_bytes, whatever N.
            ["  events per file", *(f"{run.events / run.files:,.0f}" if run.files else "-" for run in self.runs)],
            ["baseline: chDB file() -> table", *(_rate(run.baseline) for run in self.runs)],
        ]
        for name in STAGES:
            rows.append([f"{name} alone", *(_rate(run.stages.get(name)) for run in self.runs)])
        rows.append(["end to end (warm)", *(_rate(run.end_to_end) for run in self.runs)])
        rows.append(["  vs baseline", *(_percent(run.end_to_end_vs_baseline) for run in self.runs)])
        rows.append(["  startup (first file searchable)", *(f"{run.startup_seconds:.1f} s" for run in self.runs)])
        names = list(dict.fromkeys(name for run in self.runs for name in run.peak_rss_with_total_mb))
        for name in names:
            rows.append([f"peak RSS {name}", *(_mb(run.peak_rss_with_total_mb.get(name)) for run in self.runs)])
            if any(name in run.peak_rss_at_half_mb for run in self.runs):
                rows.append(["  at half of its input", *(_mb(run.peak_rss_at_half_mb.get(name)) for run in self.runs)])
            if any(name in run.median_rss_mb for run in self.runs):
                rows.append(["  median while it worked", *(_mb(run.median_rss_mb.get(name)) for run in self.runs)])
        rows.append(
            ["searchable / expected", *(f"{run.searchable:,} / {run.expected_searchable:,}" for run in self.runs)]
        )
        lines = [
            _table(header, rows),
            f"{TOGETHER}: the sum of their peaks (at least what they held at once); at one moment: the highest sum "
            "of their sizes sampled together while they worked (at most)",
        ]
        growth = self.rss_growth()
        if growth:
            lines.append(f"peak RSS at 4N / at N: {_ratios(growth)}")
        median_growth = self.median_rss_growth()
        if median_growth:
            lines.append(f"median RSS at 4N / at N: {_ratios(median_growth)}")
        in_run = self.rss_growth_in_second_half()
        if in_run:
            lines.append(f"peak RSS at the end / at half of the input, N={self.runs[-1].events:,}: {_ratios(in_run)}")
        if self.freshness is not None:
            f = self.freshness
            p = {q: percentile(f.latencies, q) for q in (50, 95, 99)}
            lines.append(
                f"freshness: {f.files} files, {f.events:,} events over {f.seconds:.0f} s "
                f"(~{f.target_events_per_s:,.0f} events/s, poll every {f.poll_interval:g} s): write -> searchable "
                + ", ".join(f"p{q} {_seconds(v)}" for q, v in p.items())
                + (f"; {f.unsearchable_files} file(s) never searchable" if f.unsearchable_files else "")
            )
        lines.append(f"({self.cpus} CPUs shared by every stage, the broker and this process; figures are noisy)")
        return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first, *rest = cells
        return "  ".join([first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))])

    return "\n".join([line(header), *(line(row) for row in rows)])


def _rate(t: Throughput | None) -> str:
    if t is None or t.per_second is None:
        return "-"
    return f"{t.per_second:,.0f} ev/s"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} MB"


def _ratios(ratios: dict[str, float | None]) -> str:
    return ", ".join(f"{name} {r:.2f}x" if r is not None else f"{name} -" for name, r in ratios.items())


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)
