"""How a stage process answers SIGTERM and SIGINT: the first asks for a clean stop, which may take at most
`stop_timeout` seconds; a second signal, or the end of that time, exits at once.

A clean stop waits on Kafka (commits, leaving the group, the producer's flush) and on ClickHouse (the insert in
flight). With either gone it could wait forever: a worker whose broker had died kept retrying for minutes after
SIGTERM and ignored a second one (NOTES.md, 2026-12-07). Exiting without the work in flight loses nothing: what
was not committed is read again by the partitions' next owner, as after a crash.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

EXIT_SECOND_SIGNAL = 130
EXIT_STOP_TIMEOUT = 1


class StopOnSignals:
    """Call it with each SIGTERM/SIGINT received; `request_stop` is called once, with the first signal."""

    def __init__(self, stage: str, timeout_s: float, request_stop: Callable[[signal.Signals], None]) -> None:
        self._stage = stage
        self._timeout_s = timeout_s
        self._request_stop = request_stop
        self._deadline: threading.Timer | None = None

    def __call__(self, signum: int) -> None:
        received = signal.Signals(signum)
        if self._deadline is not None:
            log.warning(
                "second signal (%s): the %s stage exits without finishing the work in flight",
                received.name,
                self._stage,
            )
            exit_now(EXIT_SECOND_SIGNAL)
        log.info(
            "%s received: the %s stage finishes the work in flight (at most %gs)",
            received.name,
            self._stage,
            self._timeout_s,
        )
        self._deadline = threading.Timer(self._timeout_s, self._expired)
        self._deadline.daemon = True
        self._deadline.start()
        self._request_stop(received)

    def cancel(self) -> None:
        """The stage has stopped: no deadline is left to enforce."""
        if self._deadline is not None:
            self._deadline.cancel()

    def _expired(self) -> None:
        log.error(
            "the %s stage did not finish its work in flight within %gs of the stop signal (is Kafka, or ClickHouse "
            "for the sink, reachable?); exiting without it: the next owner reads again what it did not commit. "
            "Raise stop_timeout if its work in flight needs longer",
            self._stage,
            self._timeout_s,
        )
        exit_now(EXIT_STOP_TIMEOUT)


def exit_now(code: int) -> None:
    """Exit without the interpreter's shutdown, which would wait for the very threads that are stuck."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(code)
