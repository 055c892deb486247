"""Process helpers: child processes that do not outlive trailhouse, and how the stages' glibc malloc holds memory."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
from pathlib import Path

# glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MMAP_THRESHOLD = 1 << 20  # the sink's: below its batches, above most of what Python allocates


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies, so no broker or stage is left behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int | None) -> float | None:
    """A process's resident set size now (VmRSS), or None where /proc cannot say."""
    return _status_mb(pid, "VmRSS")


def peak_rss_mb(pid: int | None) -> float | None:
    """A process's peak resident set size so far (VmHWM), or None where /proc cannot say."""
    return _status_mb(pid, "VmHWM")


def _status_mb(pid: int | None, field: str) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def use_one_malloc_arena() -> bool:
    """Make every thread of this process allocate from glibc's main heap; True if the setting took.

    Call it first thing in the worker's process, before any thread starts: a thread that has allocated keeps its
    own arena. Faust reads Kafka in a thread of its own, so the raw chunks it fetches are allocated in that thread's
    arena and freed by the agent in the main one, and each heap kept its own free space for the batches' peaks.
    With one arena the worker alone peaked at 150-151 -> 182-184 MB for 100k -> 400k events, against 161-176 ->
    202-203 MB, at the same rate (bench trail, NOTES.md 2026-11-25). Left alone when the user set MALLOC_ARENA_MAX
    or glibc.malloc.arena_max in GLIBC_TUNABLES, and where mallopt is missing (not glibc).
    """
    return _mallopt(M_ARENA_MAX, 1, "MALLOC_ARENA_MAX", "glibc.malloc.arena_max")


def map_large_allocations() -> bool:
    """Give every glibc allocation of MMAP_THRESHOLD bytes or more a mapping of its own, returned to Linux when it
    is freed; True if the setting took.

    glibc raises its threshold to the size of the largest mapped block freed (up to 32 MiB). In the sink that is
    its first batch: from then on each batch of 16 MiB, the Avro file built from it and librdkafka's buffers came
    from the heap, whose free space stayed resident between batches. The sink alone (~2 kB events, three runs
    each, same rate) peaked at 545-560 MB against 590-624 for 100k events, 558-592 MB against 594-635 for 400k
    (NOTES.md, 2026-11-25). Left alone when the user set MALLOC_MMAP_THRESHOLD_ or glibc.malloc.mmap_threshold in
    GLIBC_TUNABLES, and where mallopt is missing (not glibc).
    """
    return _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold")


def _mallopt(parameter: int, value: int, variable: str, tunable: str) -> bool:
    if variable in os.environ or tunable in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(parameter, value))
