"""A stage's stop on signals (trailhouse/shutdown.py), in a process of its own: a clean stop returns, a stuck one
ends at `stop_timeout`, a second signal ends it at once."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from trailhouse.shutdown import EXIT_SECOND_SIGNAL, EXIT_STOP_TIMEOUT

STAGE = """
    import logging, sys, threading, time
    from trailhouse.stages import run_until_signalled

    logging.basicConfig(level=logging.INFO)

    class Stage:
        stopped = threading.Event()
        def run(self):
            print("running", flush=True)
            while not (self.stopped.is_set() and {stops}):
                time.sleep(0.05)
        def stop(self):
            self.stopped.set()

    run_until_signalled("poll", Stage(), {timeout})
    time.sleep({linger})  # the process outlives the stop: an armed deadline would end it here
    print("returned", flush=True)
"""


def start_stage(*, stops: bool, timeout: float, linger: float = 0.0) -> subprocess.Popen[str]:
    code = textwrap.dedent(STAGE).format(stops=stops, timeout=timeout, linger=linger)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline() == "running\n", process.communicate()
    return process


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the stage did not exit: {process.communicate()}")
    return process.returncode, out, err


def test_a_stage_that_stops_cleanly_returns_and_its_deadline_is_cancelled():
    process = start_stage(stops=True, timeout=0.5, linger=1.5)
    process.send_signal(signal.SIGTERM)
    code, out, err = finish(process)
    assert (code, out) == (0, "returned\n"), err
    assert "SIGTERM received: the poll stage finishes the work in flight (at most 0.5s)" in err


def test_a_stage_stuck_in_its_stop_exits_at_the_stop_timeout_and_says_why():
    process = start_stage(stops=False, timeout=1.0)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code, out, err = finish(process)
    assert time.monotonic() - signalled >= 1.0
    assert code == EXIT_STOP_TIMEOUT and out == ""
    assert "the poll stage did not finish its work in flight within 1s of the stop signal" in err
    assert "Raise stop_timeout" in err


def test_a_second_signal_exits_at_once():
    process = start_stage(stops=False, timeout=600.0)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGTERM)
    code, out, err = finish(process)
    assert code == EXIT_SECOND_SIGNAL and out == ""
    assert "second signal (SIGTERM): the poll stage exits without finishing the work in flight" in err
