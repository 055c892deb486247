"""The bench's own measurements: a child's peak RSS is the child's, not its parent's."""

from trailhouse.bench_probes import in_child, own_peak_rss_mb

BALLAST_MB = 200


def test_a_spawned_child_reports_its_own_peak_rss_not_its_parents():
    ballast = bytearray(BALLAST_MB * 1024 * 1024)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))  # touch every page: resident in this process
    assert own_peak_rss_mb() > BALLAST_MB

    assert in_child(own_peak_rss_mb) < BALLAST_MB  # ru_maxrss would report the parent's size at the fork
