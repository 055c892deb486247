"""The worker's lag metric from Faust's own bookkeeping (no broker)."""

from types import SimpleNamespace

from faust.types import TP

from streams.health import raw_lag


def _consumer(ends: dict[TP, int | None], committed: dict[TP, int | None]) -> SimpleNamespace:
    return SimpleNamespace(
        assignment=lambda: set(ends), highwater=lambda tp: ends[tp], _committed_offset=dict(committed)
    )


def test_lag_counts_from_the_next_offset_to_read_and_from_0_when_nothing_was_committed():
    raw = [TP("raw", p) for p in range(4)]
    consumer = _consumer(
        {raw[0]: 10, raw[1]: 10, raw[2]: 7, raw[3]: None, TP("checkpoints", 0): 5},
        {raw[0]: 10, raw[1]: 9, raw[2]: None},
    )
    assert raw_lag(consumer, "raw") == {0: 0, 1: 1, 2: 7}, "one message left is a lag of 1; 3 is not fetched yet"
