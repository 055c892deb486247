"""Process helpers: child processes that do not outlive trailhouse, and the worker's malloc arenas."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies, so no broker or stage is left behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def use_one_malloc_arena() -> bool:
    """Make every thread of this process allocate from glibc's main heap; True if the setting took.

    Call it first thing in the worker's process, before any thread starts: a thread that has allocated keeps its
    own arena. Faust reads Kafka in a thread of its own, so the raw chunks it fetches are allocated in that thread's
    arena and freed by the agent in the main one, and each heap kept its own free space for the batches' peaks.
    With one arena the worker alone peaked at 150-151 -> 182-184 MB for 100k -> 400k events, against 161-176 ->
    202-203 MB, at the same rate (bench trail, NOTES.md 2026-11-25). Left alone when the user set MALLOC_ARENA_MAX
    or glibc.malloc.arena_max in GLIBC_TUNABLES, and where mallopt is missing (not glibc).
    """
    if "MALLOC_ARENA_MAX" in os.environ or "glibc.malloc.arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, 1))
