"""The heap trimmer: at most once per interval, and nothing where the C library cannot trim."""

from __future__ import annotations

import ctypes
import sys

import pytest

from trailhouse.heap import HeapTrimmer, c_heap_trim


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_trims_at_most_once_per_interval() -> None:
    clock, calls = Clock(), []
    trimmer = HeapTrimmer(1.0, lambda: calls.append(clock.now), clock=clock)

    outcomes = []
    for now in (100.0, 100.4, 100.99, 101.0, 101.5, 103.0):
        clock.now = now
        outcomes.append(trimmer.maybe_trim())

    assert outcomes == [True, False, False, True, False, True]
    assert calls == [100.0, 101.0, 103.0]


def test_without_malloc_trim_it_does_nothing() -> None:
    assert HeapTrimmer(0.0, None).maybe_trim() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_glibc_trim_returns_freed_pages() -> None:
    """On glibc the real call runs; freeing a heap of small blocks and trimming gives pages back (it returns 1)."""
    trim = c_heap_trim()
    if trim is None:
        pytest.skip("this C library has no malloc_trim (musl?)")
    blocks = [ctypes.create_string_buffer(2048) for _ in range(20_000)]  # ~40 MB below the mmap threshold
    del blocks
    assert trim() == 1
