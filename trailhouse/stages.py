"""Entry points of the three stages, shared by `trailhouse poll|worker|sink` and by `trailhouse run`.

Each stage has the same lifecycle: it runs until SIGTERM or SIGINT, then finishes the unit in flight (a file, a
chunk, a batch), commits what is done and leaves its consumer group. A second signal exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Protocol

from producers.poller import Poller
from trailhouse.config import Settings
from trailhouse.logs import setup_logging
from trailhouse.processes import die_with_parent, free_port

log = logging.getLogger(__name__)


class Stage(Protocol):
    def run(self) -> None: ...
    def stop(self) -> None: ...


def run_until_signalled(stage: Stage) -> None:
    """Run `stage`; the first SIGTERM/SIGINT asks it to stop cleanly, a second one exits at once."""
    signals = 0

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("second signal: exiting without finishing the work in flight")
            os._exit(130)
        log.info("%s received: finishing the work in flight", signal.Signals(signum).name)
        stage.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        stage.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def poll_stage(settings: Settings, bootstrap: str) -> Poller:
    from producers.storage import s3_client_factory

    return Poller(settings, bootstrap, s3_client_factory(settings))


def sink_stage(settings: Settings, bootstrap: str) -> Stage:
    from sinks.migrations import prepare
    from sinks.sink import Sink
    from sinks.tables import sink_tables
    from trailhouse.kafka import ensure_topics

    ensure_topics(settings, bootstrap)
    client, _ = prepare(settings)
    return Sink(settings, bootstrap, client, sink_tables(settings))


def run_worker(settings: Settings, bootstrap: str) -> None:
    from streams.app import run_worker as run_faust_worker
    from trailhouse.kafka import ensure_topics

    ensure_topics(settings, bootstrap)
    run_faust_worker(settings, bootstrap, web_port=worker_web_port(settings))


def worker_web_port(settings: Settings) -> int:
    """The configured port; unset: 6066 on a cluster, any free port on the embedded stack (several may run)."""
    if settings.worker_web_port is not None:
        return settings.worker_web_port
    return free_port() if settings.embedded_kafka else 6066


def child_main(name: str, settings: Settings, bootstrap: str) -> None:
    """Body of a stage process started by `trailhouse run` (multiprocessing, spawn).

    The child leaves the terminal's process group, so Ctrl-C reaches only the parent, which stops the stages
    in order; and it receives SIGTERM if the parent dies without stopping it.
    """
    os.setpgrp()
    die_with_parent()
    setup_logging(settings.log_level, stage=name)
    try:
        STAGES[name](settings, bootstrap)
    except Exception as exc:  # the parent reports the exit code; the reason belongs in this stage's log
        log.error("%s stage failed: %s", name, exc, exc_info=settings.log_level == "DEBUG")
        sys.exit(1)


def _run_sink(settings: Settings, bootstrap: str) -> None:
    run_until_signalled(sink_stage(settings, bootstrap))


def _run_poll(settings: Settings, bootstrap: str) -> None:
    run_until_signalled(poll_stage(settings, bootstrap))


STAGES: dict[str, Callable[[Settings, str], None]] = {
    "poll": _run_poll,
    "worker": run_worker,
    "sink": _run_sink,
}
