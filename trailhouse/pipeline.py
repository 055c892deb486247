"""`trailhouse run`: every stage on one machine, each in its own process, supervised by this one.

The worker and the sink run as child processes (`multiprocessing`, spawn), so the three stages use both cores
and the chDB engine lives in exactly one process (the sink's). The poller runs here, in a thread, so `--once`
knows exactly when every file present has been published.

`--once` is "publish, then drain": after the poll, wait until the worker group has committed up to the end of
`cloudtrail.raw`, then until the sink group has committed up to the end of `cloudtrail.events`. At that point
every record published is in ClickHouse (commits follow inserts, see sinks/sink.py).

With the embedded broker, whose topics vanish when it stops, checkpoints are saved to the data directory only
for a state of the checkpoint topic that the pipeline has drained past; otherwise a file could be checkpointed
while its records were still in the in-memory topics, and be skipped by the next run.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from producers.poller import PollReport
from trailhouse.config import Settings
from trailhouse.embedded import EmbeddedKafka
from trailhouse.errors import TerminalError, TrailhouseError
from trailhouse.health import Health, HealthServer, run_ports
from trailhouse.kafka import committed_offsets, end_offsets, is_drained
from trailhouse.metrics import EMBEDDED_BROKER_BYTES, EMBEDDED_BROKER_RESTARTS
from trailhouse.stages import child_main, poll_health, poll_stage

log = logging.getLogger(__name__)

CHILD_STAGES = ("worker", "sink")
DRAIN_AT_STOP_S = 60.0
KILL_AFTER_STOP_TIMEOUT_S = 10.0  # a child exits on its own at its stop_timeout; this is for one that cannot
SAVE_EVERY_S = 10.0


class StageDied(TerminalError):
    """A stage process exited on its own; its log above says why."""


class Pipeline:
    """The worker and sink child processes, plus drain checks against their consumer groups."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        ports: dict[str, int] | None = None,
        stages: tuple[str, ...] = CHILD_STAGES,
    ) -> None:
        """`ports`: each child's /healthz and /metrics port (health.run_ports); None = no servers. `stages`: which
        child stages to start (a benchmark runs one alone)."""
        self._settings = settings
        self._bootstrap = bootstrap
        self._ports = ports or {}
        self._stages = stages
        self._children: dict[str, multiprocessing.process.BaseProcess] = {}

    @property
    def pids(self) -> dict[str, int | None]:
        return {name: process.pid for name, process in self._children.items()}

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        for name in self._stages:
            settings = self._settings.with_(http_port=self._ports.get(name, 0))
            process = context.Process(
                target=child_main, args=(name, settings, self._bootstrap), name=f"trailhouse-{name}"
            )
            process.start()
            self._children[name] = process
            log.info("started the %s stage (pid %d)", name, process.pid)

    def check_alive(self) -> None:
        for name, process in self._children.items():
            if not process.is_alive():
                raise StageDied(f"the {name} stage exited with code {process.exitcode}; see its log above")

    def stop(self) -> None:
        """SIGTERM every stage, wait for each to finish its work in flight, then kill what is left."""
        for process in self._children.values():
            if process.is_alive():
                process.terminate()
        wait_s = self._settings.stop_timeout + KILL_AFTER_STOP_TIMEOUT_S
        deadline = time.monotonic() + wait_s
        for name, process in self._children.items():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("the %s stage did not stop within %.0fs; killing it", name, wait_s)
                process.kill()
                process.join()

    def drain_plan(self) -> list[tuple[str, list[str]]]:
        """(consumer group, its input topics), in pipeline order."""
        from sinks.tables import SINK_TOPICS

        s = self._settings
        sunk = [getattr(s, topic) for topic, _, _ in SINK_TOPICS]  # events first: progress is shown for it
        return [(s.worker_group, [s.topic_raw, s.topic_checkpoints]), (s.sink_group, sunk)]

    def ends(self, topics: list[str]) -> dict[str, dict[int, int]]:
        return {topic: end_offsets(self._settings, self._bootstrap, topic) for topic in topics}

    def drained(self, group: str, ends: dict[str, dict[int, int]]) -> bool:
        return all(
            is_drained(committed_offsets(self._settings, self._bootstrap, group, topic), topic_ends)
            for topic, topic_ends in ends.items()
        )

    def wait_drained(
        self, *, timeout_s: float, progress: Callable[[str], None] | None = None, every_s: float = 0.5
    ) -> None:
        """Block until the worker, then the sink, have committed everything published before this call, checking
        (and reporting progress) every `every_s`: the bench checks more often, as its clock stops at the drain."""
        deadline = time.monotonic() + timeout_s
        for group, topics in self.drain_plan():
            ends = self.ends(topics)
            total = sum(ends[topics[0]].values())
            while not self.drained(group, ends):
                self.check_alive()
                if time.monotonic() > deadline:
                    raise TrailhouseError(
                        f"{group} did not catch up with {', '.join(topics)} within {timeout_s:.0f}s; "
                        "see the stage logs, or raise --timeout"
                    )
                if progress is not None:
                    done = sum(committed_offsets(self._settings, self._bootstrap, group, topics[0]).values())
                    progress(f"{group}: {min(done, total)}/{total} messages of {topics[0]}")
                time.sleep(every_s)


@dataclass
class CheckpointSaver:
    """Saves the embedded broker's checkpoints once the pipeline has drained past them (see module doc)."""

    kafka: EmbeddedKafka
    pipeline: Pipeline
    settings: Settings
    _candidate: dict[str, dict[str, tuple[int, bytes]]] | None = None
    _ends: dict[str, dict[int, int]] | None = None
    _stage: int = 0
    _last: float = 0.0
    saves: int = 0

    def tick(self) -> None:
        """Advance one step without blocking; call it every second or so."""
        plan = self.pipeline.drain_plan()
        if self._candidate is None:
            if time.monotonic() - self._last < SAVE_EVERY_S:
                return
            # Snapshot first, end offsets second: every file in the snapshot is below these ends.
            self._candidate = {topic: self.kafka.snapshot(topic) for topic in self.kafka.drained_topics}
            self._stage = 0
            self._ends = self.pipeline.ends(plan[0][1])
        elif self.pipeline.drained(plan[self._stage][0], self._ends or {}):
            self._stage += 1
            if self._stage < len(plan):
                self._ends = self.pipeline.ends(plan[self._stage][1])
                return
            for topic, entries in self._candidate.items():
                self.kafka.write_snapshot(topic, entries)
            self.kafka.save([self.settings.topic_registry])
            self._candidate, self._last = None, time.monotonic()
            self.saves += 1


def run_once(
    settings: Settings, bootstrap: str, *, timeout_s: float, progress: Callable[[str], None] | None = None
) -> PollReport:
    """Publish every file present in the registered sources, and return once all of it is in ClickHouse."""
    pipeline = Pipeline(settings, bootstrap)
    pipeline.start()
    try:
        report = poll_stage(settings, bootstrap).poll_once()
        log.info(
            "published %d file(s), %d record(s); waiting for the worker and the sink", report.files, report.records
        )
        pipeline.wait_drained(timeout_s=timeout_s, progress=progress)
        return report
    finally:
        pipeline.stop()


def run_forever(settings: Settings, bootstrap: str, kafka: EmbeddedKafka | None, stop: threading.Event) -> None:
    """Run every stage until `stop` is set; with the embedded broker, drain before stopping.

    Each stage serves /healthz and /metrics on its port of `run_ports`: the poller from this process.

    The embedded broker keeps every message in memory and has no retention, so a run that never stops would
    grow until the machine runs out. Once the broker holds more than `embedded_broker_max_mb`, the run stops its
    stages as at Ctrl-C (drain, save), restarts the broker with only what the data directory keeps, and starts
    them again: new files wait in S3 meanwhile.
    """
    ports = run_ports(settings)
    health = poll_health(settings)
    server = HealthServer(health, settings.http_bind, ports["poll"]) if ports["poll"] else None
    try:
        while (
            _run_until_stop_or_full(settings, bootstrap, kafka, stop, health, ports)
            and not stop.is_set()  # a stop came during the restart's drain: what it would do is done
            and kafka is not None
        ):
            health.set_ready(False, "restarting the embedded Kafka broker")
            bootstrap = kafka.restart()
            EMBEDDED_BROKER_RESTARTS.inc()
            log.info("the embedded Kafka broker restarted on %s; starting the stages again", bootstrap)
    finally:
        health.stopping()
        if server is not None:
            server.close()


def _run_until_stop_or_full(
    settings: Settings,
    bootstrap: str,
    kafka: EmbeddedKafka | None,
    stop: threading.Event,
    health: Health,
    ports: dict[str, int],
) -> bool:
    """Run the stages until `stop` is set (False) or the embedded broker is full (True), then stop them, having
    drained and saved where the broker is embedded. A full broker is only acted on after a save of this run of the
    stages, so every restart starts from later checkpoints than the one before."""
    pipeline = Pipeline(settings, bootstrap, ports)
    pipeline.start()
    poller = poll_stage(settings, bootstrap, health)
    poller_thread = threading.Thread(target=poller.run, name="poller", daemon=True)
    poller_thread.start()
    saver = CheckpointSaver(kafka, pipeline, settings) if kafka is not None and kafka.owner else None
    full = False
    try:
        while not full and not stop.wait(1.0):
            pipeline.check_alive()
            if not poller_thread.is_alive():
                raise StageDied("the poll stage stopped; see its log above")
            if saver is not None:
                saver.tick()
                full = _broker_full(settings, saver.kafka, saved=saver.saves > 0)
        poller.stop()
        poller_thread.join(settings.stop_timeout)
        if saver is not None:
            log.info("draining the pipeline before the embedded broker stops (Ctrl-C again to skip)")
            _drain_and_save(settings, pipeline, saver.kafka, restarting=full)
        return full
    finally:
        poller.stop()
        pipeline.stop()


def _broker_full(settings: Settings, kafka: EmbeddedKafka, *, saved: bool) -> bool:
    """Whether to restart the broker now: it holds more than allowed, and a save since the stages started lets the
    restart go on from later checkpoints."""
    resident = kafka.resident_mb()
    if resident is None:
        return False
    EMBEDDED_BROKER_BYTES.set(resident * 1024 * 1024)
    if not (saved and 0 < settings.embedded_broker_max_mb < resident):
        return False
    log.warning(
        "the embedded Kafka broker holds %.0f MB (every message since it started; embedded_broker_max_mb=%d): "
        "restarting it to give the memory back. For a run that never stops, use a Kafka cluster (--kafka-bootstrap)",
        resident,
        settings.embedded_broker_max_mb,
    )
    return True


def _drain_and_save(settings: Settings, pipeline: Pipeline, kafka: EmbeddedKafka, *, restarting: bool) -> None:
    """Drain, then save the checkpoints and the workers' state with the registry. A restart that cannot drain
    goes on from the last save instead: the files after its checkpoints are read again, and their events, already
    stored, are stored once (de-duplicated in ClickHouse)."""
    try:
        pipeline.wait_drained(timeout_s=DRAIN_AT_STOP_S)
    except TrailhouseError as exc:
        if not restarting or isinstance(exc, TerminalError):
            raise
        log.warning("%s; restarting from the last saved checkpoints", exc)
        kafka.save([settings.topic_registry])
        return
    kafka.save([*kafka.drained_topics, settings.topic_registry])
