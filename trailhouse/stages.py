"""Entry points of the three stages, shared by `trailhouse poll|worker|sink` and by `trailhouse run`.

Each stage has the same lifecycle: it runs until SIGTERM or SIGINT, then finishes the unit in flight (a file, a
chunk, a batch), commits what is done and leaves its consumer group, within `stop_timeout`. A second signal, or
the end of that time, exits at once (trailhouse/shutdown.py).

Each stage also reports its `Health` and metrics, served on its own port (trailhouse/health.py): the poller
through its observer, the sink through its write callback and its consumer's statistics, the worker through a
Faust sensor (streams/health.py).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from producers.checkpoints import Bounds
from producers.poller import Observers, Poller, PollObserver
from trailhouse.config import Settings
from trailhouse.health import Health, serve
from trailhouse.logs import setup_logging
from trailhouse.processes import die_with_parent, free_port, map_large_allocations, use_one_malloc_arena
from trailhouse.shutdown import StopOnSignals

if TYPE_CHECKING:
    from producers.sqs import SqsPoller

log = logging.getLogger(__name__)


class Stage(Protocol):
    def run(self) -> None: ...
    def stop(self) -> None: ...


def run_until_signalled(name: str, stage: Stage, stop_timeout: float, health: Health | None = None) -> None:
    """Run `stage`; the first SIGTERM/SIGINT asks it to stop cleanly within `stop_timeout`, a second one exits at
    once (trailhouse/shutdown.py)."""

    def request_stop(_signal: signal.Signals) -> None:
        if health is not None:
            health.stopping()
        stage.stop()

    stop = StopOnSignals(name, stop_timeout, request_stop)
    previous = {s: signal.signal(s, lambda signum, _frame: stop(signum)) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        stage.run()
    except Exception as exc:
        if health is not None:
            health.failed(str(exc))
        raise
    finally:
        stop.cancel()
        for s, handler in previous.items():
            signal.signal(s, handler)


def poll_health(settings: Settings) -> Health:
    """A poll beats per file and per source; between polls it waits `poll_interval`."""
    return Health("poll", stall_after_s=max(300.0, 3 * settings.poll_interval))


def sink_health(settings: Settings) -> Health:
    """The sink beats with its consumer's statistics (every 5 s) and per write; one ClickHouse insert may take
    up to clickhouse-connect's 300 s receive timeout."""
    return Health("sink", stall_after_s=360.0)


def poll_stage(
    settings: Settings,
    bootstrap: str,
    health: Health | None = None,
    *,
    bounds: Bounds | None = None,
    observer: PollObserver | None = None,
) -> Poller:
    from producers.credentials import AwsClients
    from trailhouse.metrics import PollMetrics

    metrics = PollMetrics(health) if health is not None else None
    return Poller(settings, bootstrap, AwsClients(settings), observer=Observers(metrics, observer), bounds=bounds)


def sqs_stage(settings: Settings, bootstrap: str, queue_url: str, health: Health | None = None) -> SqsPoller:
    from producers.credentials import AwsClients
    from producers.sqs import SqsPoller
    from trailhouse.metrics import SQS_MESSAGES, PollMetrics

    def count(outcome: str, n: int) -> None:
        if n:
            SQS_MESSAGES.labels(outcome).inc(n)

    observer = PollMetrics(health) if health is not None else None
    return SqsPoller(settings, bootstrap, AwsClients(settings), queue_url, observer=observer, count=count)


def sink_stage(settings: Settings, bootstrap: str, health: Health | None = None) -> Stage:
    from sinks.migrations import prepare, tune_embedded_tables
    from sinks.sink import Sink
    from sinks.tables import sink_tables
    from trailhouse.kafka import ensure_topics, watch_consumer_stats
    from trailhouse.metrics import ConsumerGroupMetrics, sink_writes

    ensure_topics(settings, bootstrap)
    client, layout = prepare(settings)
    if settings.embedded_clickhouse:
        tune_embedded_tables(client, layout)  # the engine's background work runs in this process
    on_write = None
    if health is not None:
        watch_consumer_stats(ConsumerGroupMetrics(health, settings.sink_group).on_stats)
        on_write = sink_writes(health)
    return Sink(settings, bootstrap, client, sink_tables(settings), on_write=on_write)


def serve_stage(stage: str, settings: Settings, run: Callable[[Health], None]) -> None:
    """Run one stage with its /healthz, /readyz and /metrics server (when its port is not 0) around it."""
    health = {"poll": poll_health, "sink": sink_health}[stage](settings)
    server = serve(health, settings)
    try:
        run(health)
    finally:
        if server is not None:
            server.close()


def run_worker(settings: Settings, bootstrap: str) -> None:
    """The worker until signalled; `trailhouse worker` calls `use_one_malloc_arena` itself, before its own Kafka
    clients start threads."""
    use_one_malloc_arena()
    from streams.app import run_worker as run_faust_worker
    from trailhouse.kafka import ensure_topics

    ensure_topics(settings, bootstrap)
    run_faust_worker(settings, bootstrap, web_port=worker_web_port(settings))


def worker_web_port(settings: Settings) -> int:
    """The configured port; 0 = any free port; unset: 6066 on a cluster, any free port on the embedded stack."""
    if settings.worker_web_port:
        return settings.worker_web_port
    return free_port() if settings.worker_web_port == 0 or settings.embedded_kafka else 6066


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


def run_sink(settings: Settings, bootstrap: str) -> None:
    map_large_allocations()

    def run(health: Health) -> None:
        run_until_signalled("sink", sink_stage(settings, bootstrap, health), settings.stop_timeout, health)

    serve_stage("sink", settings, run)


def run_poll(settings: Settings, bootstrap: str, *, sqs_queue: str | None = None, bounds: Bounds | None = None) -> None:
    """The poller until signalled: its share of the sources (listing), or the notifications of an SQS queue."""

    def run(health: Health) -> None:
        if sqs_queue:
            stage: Stage = sqs_stage(settings, bootstrap, sqs_queue, health)
        else:
            stage = poll_stage(settings, bootstrap, health, bounds=bounds)
        run_until_signalled("poll", stage, settings.stop_timeout, health)

    serve_stage("poll", settings, run)


STAGES: dict[str, Callable[[Settings, str], None]] = {
    "poll": run_poll,
    "worker": run_worker,
    "sink": run_sink,
}
