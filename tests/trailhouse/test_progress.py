"""The progress line of a backfill: files, events, bytes, the share of each source's delivery-time span covered
and an ETA at the same pace."""

import io
from datetime import UTC, datetime, timedelta

from trailhouse.progress import BackfillProgress

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 1, 11, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_backfill_shows_files_events_bytes_share_and_eta():
    clock, out = Clock(), io.StringIO()
    progress = BackfillProgress(since=SINCE, until=UNTIL, out=out, clock=clock, every_s=2.0)
    progress.poll_started(2)
    for source in ("a", "b"):
        progress.position(source, SINCE, UNTIL + timedelta(days=30))  # newest beyond --until: the span ends there
    assert progress.fraction() == 0.0

    clock.now += 60
    progress.file_published("a", 1000, 0, 2_500_000)
    progress.position("a", SINCE + timedelta(days=10), None)  # source a done
    progress.file_published("b", 500, 1, 500_000)
    progress.position("b", SINCE + timedelta(days=5), None)  # source b half way
    assert progress.fraction() == 0.75
    assert progress.line() == "2 files, 1,500 events, 3.0 MB, 75%, ETA 20s"
    assert out.getvalue() == "  … 1 files, 1,000 events, 2.5 MB, 0%\n", "one line per every_s, not one per file"

    clock.now += 2
    progress.source_polled("b", None)
    assert out.getvalue().splitlines()[-1] == "  … 2 files, 1,500 events, 3.0 MB, 75%, ETA 20s"


def test_without_bounds_the_span_runs_from_the_checkpoint_to_the_newest_file():
    clock = Clock()
    progress = BackfillProgress(out=io.StringIO(), clock=clock)
    progress.poll_started(1)
    progress.position("a", None, None)  # nothing checkpointed yet: no span
    assert progress.fraction() is None and progress.line() == "0 files, 0 events, 0.0 MB"
    start = datetime(2026, 11, 1, tzinfo=UTC)
    progress.position("a", start, start + timedelta(hours=4))
    progress.position("a", start + timedelta(hours=1), start + timedelta(hours=4))
    clock.now += 3600
    assert progress.line() == "0 files, 0 events, 0.0 MB, 25%, ETA 3h00m"
