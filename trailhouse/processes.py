"""Process helpers for the embedded stack: child processes that do not outlive trailhouse."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies, so no broker or stage is left behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
