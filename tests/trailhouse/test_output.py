"""Durations as `sources status` (lag) and progress lines (ETA) print them."""

import pytest

from trailhouse.output import duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "0s"),
        (59.9, "59s"),
        (185, "3m05s"),
        (7620, "2h07m"),
        (86399, "23h59m"),
        (86400 * 12 + 3600 * 4 + 59, "12d04h"),
        (107_700_338, "1,246d12h"),  # the real 2023 files' lag, read in 2026: was "107,700,338s"
    ],
)
def test_a_duration_reads_at_a_glance_from_seconds_to_years(seconds, text):
    assert duration(seconds) == text
