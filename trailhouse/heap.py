"""Hands the free pages of the C heap back to the system between batches of work.

glibc's malloc keeps the pages of memory a process freed. A worker batch allocates its raw chunks (hundreds of kB
each), then thousands of 1-2 kB records and events, and frees them in an order that leaves holes among the
allocations that live on (RocksDB's write buffers, the detector's state), so the resident size followed the size
of the chunks handled, not what the process held: in `trailhouse bench pipeline`, ~60 MB of the worker's heap was
free at 4N. `malloc_trim(0)` returns the free pages inside the heap too, not only at its top; it walks the heap
(~15 ms on a fragmented 300 MB one), so at most once per `min_interval_s`. Where the C library has no
`malloc_trim` (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from time import monotonic


def c_heap_trim() -> Callable[[], object] | None:
    """glibc's `malloc_trim(0)` as a function, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return lambda: trim(0)


class HeapTrimmer:
    def __init__(
        self, min_interval_s: float, trim: Callable[[], object] | None, *, clock: Callable[[], float] = monotonic
    ) -> None:
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._trim = trim
        self._last: float | None = None

    def maybe_trim(self) -> bool:
        """Trim unless the last trim was less than `min_interval_s` ago (or there is no malloc_trim); says whether
        it trimmed. Call it where the process holds little: between batches."""
        now = self._clock()
        if self._trim is None or (self._last is not None and now - self._last < self._min_interval_s):
            return False
        self._trim()
        self._last = now
        return True
