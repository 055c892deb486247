"""The progress line of a one-shot poll or a backfill (`trailhouse poll --once`, `--since ... --until ...`):
files, events, bytes, and an ETA from how much of each source's delivery-time span is covered.

It is a poll observer (producers.poller.PollObserver): the poller reports each file and, per source, the delivery
time of its checkpoint and of the newest file seen (or `--until`); progress is the share of the spans from where
each source started to that end that is behind the checkpoints, and the ETA assumes the same pace.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from trailhouse.output import duration


@dataclass
class _Span:
    start: datetime
    at: datetime
    end: datetime | None


@dataclass
class BackfillProgress:
    since: datetime | None = None
    until: datetime | None = None
    out: TextIO = sys.stderr
    every_s: float = 2.0
    clock: Callable[[], float] = time.monotonic
    files: int = 0
    events: int = 0
    bytes: int = 0
    _spans: dict[str, _Span] = field(default_factory=dict)
    _started: float | None = None
    _shown: float = 0.0

    def poll_started(self, sources: int) -> None:
        if self._started is None:
            self._started = self.clock()

    def file_published(self, source_id: str, records: int, dead_letters: int, size: int) -> None:
        self.files += 1
        self.events += records
        self.bytes += size
        self._show()

    def position(self, source_id: str, checkpoint: datetime | None, newest: datetime | None) -> None:
        if checkpoint is None:
            return
        end = min(newest, self.until) if newest and self.until else (self.until or newest)
        span = self._spans.get(source_id)
        if span is None:
            start = min(self.since, checkpoint) if self.since else checkpoint
            self._spans[source_id] = _Span(start, checkpoint, end)
        else:
            span.at = checkpoint
            span.end = max(filter(None, (span.end, end)), default=None)

    def source_polled(self, source_id: str, error: str | None) -> None:
        self._show()

    def fraction(self) -> float | None:
        """Share of the delivery-time spans covered so far; None while no span is known."""
        total = done = 0.0
        for span in self._spans.values():
            if span.end is None or span.end <= span.start:
                continue
            total += (span.end - span.start).total_seconds()
            done += (min(span.at, span.end) - span.start).total_seconds()
        return done / total if total > 0 else None

    def line(self) -> str:
        text = f"{self.files:,} files, {self.events:,} events, {self.bytes / 1e6:,.1f} MB"
        fraction = self.fraction()
        if fraction is not None and self._started is not None:
            text += f", {fraction:.0%}"
            elapsed = self.clock() - self._started
            if 0 < fraction < 1 and elapsed > 0:
                text += f", ETA {duration(elapsed * (1 - fraction) / fraction)}"
        return text

    def _show(self) -> None:
        if self.clock() - self._shown >= self.every_s:
            self._shown = self.clock()
            print(f"  … {self.line()}", file=self.out, flush=True)
