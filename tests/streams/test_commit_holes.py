"""Faust's commit offset with and without a hole at the committed offset (no broker: the consumer's bookkeeping)."""

import asyncio
from collections import defaultdict
from types import SimpleNamespace

import pytest
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from streams.commit_holes import hold_commits_at_holes

RAW, OTHER = TP("raw", 0), TP("other", 0)


@pytest.fixture(autouse=True)
def _faust_consumer(monkeypatch):
    """Each test wraps Faust's own methods afresh (the worker wraps them once per process)."""
    monkeypatch.setattr(Consumer, "_new_offset", Consumer._new_offset)
    monkeypatch.setattr(Consumer, "_commit_offsets", Consumer._commit_offsets)


def _consumer(committed: int | None, acked: list[int], gap: tuple[int, int] | None = None, tp: TP = RAW):
    gaps = defaultdict(IntervalTree)
    if gap:
        gaps[tp].addi(*gap)
    return SimpleNamespace(
        _acked=defaultdict(list, {tp: list(acked)}),
        _acked_index=defaultdict(set, {tp: set(acked)}),
        _committed_offset=defaultdict(lambda: None, {tp: committed}),
        _gap=gaps,
    )


def test_a_dropped_message_at_the_committed_offset_holds_the_commit():
    hold_commits_at_holes(["raw"])
    new_offset = Consumer._new_offset
    assert new_offset(_consumer(5, [6, 7]), RAW) is None, "5 was fetched and dropped: Faust alone commits 8"
    assert new_offset(_consumer(None, [3, 4]), RAW) is None, "a partition committed at 0 (kept as None)"
    assert new_offset(_consumer(5, [5, 6, 7]), RAW) == 8
    assert new_offset(_consumer(None, [0, 1]), RAW) == 2


def test_a_gap_faust_records_after_a_seek_is_not_trusted_and_other_topics_keep_faust_s_rule():
    hold_commits_at_holes(["raw"])
    new_offset = Consumer._new_offset
    assert new_offset(_consumer(5, [9], gap=(6, 9)), RAW) is None, "5..8 are about to be delivered again"
    assert new_offset(_consumer(5, [5, 9], gap=(6, 9)), RAW) == 6, "a recorded gap is not merged in"
    assert new_offset(_consumer(5, [6, 7], tp=OTHER), OTHER) == 8


@pytest.mark.parametrize("refused", [True, False])
def test_a_commit_the_broker_refused_is_not_taken_for_made(monkeypatch, refused):
    async def faust_commit_offsets(self, offsets, start_new_transaction=True):
        self._committed_offset.update(offsets)  # what Faust does whether or not the broker took the commit
        return not refused

    monkeypatch.setattr(Consumer, "_commit_offsets", faust_commit_offsets)
    hold_commits_at_holes(["raw"])
    consumer = _consumer(None, [])
    consumer._committed_offset[OTHER] = 4
    did_commit = asyncio.run(Consumer._commit_offsets(consumer, {RAW: 9, OTHER: 7}))
    assert did_commit is not refused
    assert dict(consumer._committed_offset) == ({RAW: None, OTHER: 4} if refused else {RAW: 9, OTHER: 7})
