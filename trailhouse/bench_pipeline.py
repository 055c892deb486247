"""`trailhouse bench pipeline`: how fast, how fresh, how big, against chDB's own ingest of the same files.

At each size (N events over `span`, and with `--scale` 4N events over 4x the span: files of the same size, 4x as
many, as a trail delivers when it runs 4x as long) it generates CloudTrail files into a folder (a file:// source) and
measures, on the embedded stack (Tansu, chDB) with the stages `trailhouse run` uses:

1. baseline: chDB reading the same .json.gz files into the events table (INSERT ... SELECT ... FROM file(...)), in
   a process of its own: the practical ceiling of this machine;
2. each stage alone: the poller publishing every file to `cloudtrail.raw`; the worker, then the sink, each started
   alone on a topic of its own, warmed with one message (so the figure excludes process start and group join),
   then fed the rest of the previous stage's output, copied in far faster than the stage drains it, timed until
   the stage has committed all of it;
3. end to end: worker and sink child processes (trailhouse/pipeline.py), warmed with one small file of another
   source, then a poller in a child process of its own publishes the N events; the clock runs from its first
   listing until both groups have committed everything (commits follow inserts: everything is searchable), as
   `run --once` does;
4. freshness (first size only): with that pipeline running, a new file about every 2 s at a steady rate, the
   poller listing every `poll_interval` (1 s); per file, seconds from its write to searchable (its last event
   committed by the sink);
5. peak RSS (VmHWM) of each stage's process and of the broker, and the median of the worker's and the sink's
   RSS sampled while they worked (the level they run at, apart from single moments); the three stages together
   end to end, as the sum of their peaks and as the highest sum of their RSS sampled at the same moments; with
   `--scale`, the growth of each from N to 4N.

Finally the events table is counted in a process of its own: every event generated must be searchable once.
Each phase has its own data directory under `<data-dir>/bench` (wiped at start), broker and ClickHouse path.
It reports, it never asserts a time: trailhouse/bench_report.py renders the figures.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition

from producers.poller import Poller
from schemas import Codec
from trailhouse.bench_probes import (
    Child,
    PollRun,
    RssSampler,
    chdb_baseline,
    copy_topic,
    count_events,
    highest,
    in_child,
    peak_rss_mb,
    poll_alone,
    total,
    wait_committed,
)
from trailhouse.bench_report import Freshness, PipelineBench, SizeRun, Throughput
from trailhouse.config import Settings
from trailhouse.embedded import EmbeddedKafka
from trailhouse.errors import ConfigError
from trailhouse.generate import FIRST_ACCOUNT, GenerateSpec, account_ids, folder_writer, generate_files, write_files
from trailhouse.kafka import client_options, committed_offsets, end_offsets, ensure_topics, partitions_of
from trailhouse.pipeline import Pipeline
from trailhouse.registry import Registry
from trailhouse.sources import Source, new_source
from trailhouse.stages import poll_stage

log = logging.getLogger(__name__)

WARMUP_REGION = "ap-south-1"  # the warm-up file's source: not one of the measured ones
WARMUP_EVENTS = 20
TRICKLE_EVERY_S = 2.0
DRAIN_CHECK_S = 0.1  # the end-to-end clock stops at the first check that finds the pipeline drained
_EVENT = Codec.of("Event")


@dataclass(frozen=True)
class BenchSpec:
    events: int
    accounts: int = 3
    seed: int = 7
    regions: tuple[str, ...] = ("us-east-1",)
    span: timedelta = timedelta(hours=24)  # of event time at N; at 4N, 4x as long, so the files keep their size
    scale: bool = False
    freshness_seconds: float = 30.0
    freshness_rate: float = 1000.0  # events per second of the trickle
    timeout_s: float = 1800.0  # per wait, so a stuck stage ends the bench instead of hanging it


@dataclass(frozen=True)
class WarmRun:
    """A stage run alone after a warm-up (worker, sink)."""

    rate: Throughput
    peak_rss_mb: float | None
    # when it had committed half of its input: the same figure at the end means its memory stopped growing
    peak_rss_at_half_mb: float | None
    median_rss_mb: float | None  # sampled while the clock ran: the level it works at


@dataclass(frozen=True)
class EndToEnd:
    """Every stage running, from the files to everything searchable; figures keyed by stage."""

    rate: Throughput
    startup_seconds: float
    peak_rss_mb: dict[str, float | None]  # each stage and the broker
    median_rss_mb: dict[str, float | None]  # worker and sink
    together_sampled_mb: float | None  # the highest sum of the three stages' RSS sampled at one moment
    freshness: Freshness | None


def bench_pipeline(settings: Settings, spec: BenchSpec, progress: Callable[[str], None]) -> PipelineBench:
    if not settings.embedded_kafka or settings.clickhouse_url:
        raise ConfigError(
            "`trailhouse bench pipeline` measures the embedded stack (Tansu + chDB): unset kafka_bootstrap and "
            "clickhouse_url"
        )
    root = settings.data_dir.resolve() / "bench"  # absolute: its sources name their folders as file:///...
    shutil.rmtree(root, ignore_errors=True)
    sizes = [spec.events, 4 * spec.events] if spec.scale else [spec.events]
    runs, freshness = [], None
    for index, events in enumerate(sizes):
        run, measured = _measure_size(settings, root / f"n{events}", spec, events, index == 0, progress)
        runs.append(run)
        freshness = freshness or measured
    return PipelineBench(runs, freshness, spec.accounts, os.cpu_count() or 1)


def write_report(report: PipelineBench, path: Path | None) -> str:
    """The report as text; written as JSON to `path` too when given."""
    if path is not None:
        path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return report.render()


def trail_at(spec: BenchSpec, events: int) -> GenerateSpec:
    """The files of one size: `events` over the span that keeps N's rate, so 4N is the same trail running 4x as
    long. Packing 4N into N's span instead makes every file 4x larger, and the stages' buffers hold files, so peak
    RSS would grow with the file size, which is a matter of rate (sized by settings), not with N."""
    return GenerateSpec(
        events=events,
        accounts=spec.accounts,
        seed=spec.seed,
        regions=spec.regions,
        span=spec.span * (events / spec.events),
    )


def _measure_size(
    settings: Settings, root: Path, spec: BenchSpec, events: int, with_freshness: bool, progress: Callable[[str], None]
) -> tuple[SizeRun, Freshness | None]:
    trail = root / "trail"
    generated = trail_at(spec, events)
    files, records = write_files(generate_files(generated), folder_writer(trail))
    progress(f"N={events:,}: {files:,} files, {records:,} events generated in {trail}")
    sources = [
        new_source(account, region, f"file://{trail}")
        for account in account_ids(spec.accounts, spec.seed)
        for region in spec.regions
    ]

    progress(f"N={events:,}: baseline, chDB reading the files into the events table")
    rows, seconds, baseline_rss = in_child(chdb_baseline, trail, f"chdb://{(root / 'baseline').resolve()}", "baseline")
    polled, warmed = _stages_alone(settings.with_(data_dir=root / "stages"), sources, spec, progress)
    pipeline_settings = settings.with_(data_dir=root / "pipeline", poll_interval=1.0)
    e2e = _end_to_end(pipeline_settings, sources, spec, with_freshness, progress)
    progress(f"N={events:,}: counting the events table")
    searchable, distinct = in_child(
        count_events, pipeline_settings.clickhouse_dsn, pipeline_settings.clickhouse_database
    )
    expected = WARMUP_EVENTS + records + (e2e.freshness.events if e2e.freshness else 0)
    if distinct != searchable:
        log.warning("the events table holds %d rows but %d distinct event ids", searchable, distinct)
    run = SizeRun(
        events=records,
        files=files,
        span_hours=generated.span / timedelta(hours=1),
        baseline=Throughput(rows, seconds),
        stages={"poll": Throughput(polled.records, polled.seconds)} | {n: w.rate for n, w in warmed.items()},
        end_to_end=e2e.rate,
        startup_seconds=e2e.startup_seconds,
        peak_rss_mb={
            "baseline (chDB)": baseline_rss,
            "poll (alone)": polled.peak_rss_mb,
            **{f"{name} (alone)": w.peak_rss_mb for name, w in warmed.items()},
            **e2e.peak_rss_mb,
        },
        together_sampled_mb=e2e.together_sampled_mb,
        peak_rss_at_half_mb={f"{name} (alone)": w.peak_rss_at_half_mb for name, w in warmed.items()},
        median_rss_mb={**{f"{name} (alone)": w.median_rss_mb for name, w in warmed.items()}, **e2e.median_rss_mb},
        searchable=searchable,
        expected_searchable=expected,
    )
    return run, e2e.freshness


def _stages_alone(
    settings: Settings, sources: list[Source], spec: BenchSpec, progress: Callable[[str], None]
) -> tuple[PollRun, dict[str, WarmRun]]:
    """Each stage alone: the poller, then the worker and the sink (each warmed up first)."""
    with EmbeddedKafka(settings) as kafka:
        bootstrap = kafka.bootstrap
        registry = Registry(settings, bootstrap)
        for source in sources:
            registry.add(source)
        progress("poller alone: every file -> cloudtrail.raw")
        polled = in_child(poll_alone, settings, bootstrap)

        progress("worker alone: cloudtrail.raw (copied) -> cloudtrail.events")
        worker_settings = settings.with_(topic_raw=f"{settings.topic_raw}.bench", worker_group="bench-worker")
        ensure_topics(worker_settings, bootstrap)
        worker = _warm_stage(
            "worker",
            worker_settings,
            bootstrap,
            source=settings.topic_raw,
            group=worker_settings.worker_group,
            target=worker_settings.topic_raw,
            done=lambda: total(end_offsets(settings, bootstrap, settings.topic_events)),
            timeout_s=spec.timeout_s,
        )

        progress("sink alone: cloudtrail.events (copied) -> ClickHouse")
        sink_settings = settings.with_(topic_events=f"{settings.topic_events}.bench", sink_group="bench-sink")
        ensure_topics(sink_settings, bootstrap)
        sink = _warm_stage(
            "sink",
            sink_settings,
            bootstrap,
            source=settings.topic_events,
            group=sink_settings.sink_group,
            target=sink_settings.topic_events,
            done=lambda: total(committed_offsets(settings, bootstrap, "bench-sink", sink_settings.topic_events)),
            timeout_s=spec.timeout_s,
        )
    return polled, {"worker": worker, "sink": sink}


def _warm_stage(
    stage: str,
    settings: Settings,
    bootstrap: str,
    *,
    source: str,
    group: str,
    target: str,
    done: Callable[[], int],
    timeout_s: float,
) -> WarmRun:
    """Run `stage` alone on `target`: one message of `source` warms it up, then the clock runs from copying the
    rest until the stage committed all of it; `done()` counts the events it has handled (read before and after)."""
    pipeline = Pipeline(settings, bootstrap, stages=(stage,))
    pipeline.start()
    pid = pipeline.pids.get(stage)
    at_half: list[float | None] = []

    def sample(committed: float) -> None:
        if committed >= 0.5 and not at_half:
            at_half.append(peak_rss_mb(pid))

    try:
        ends, first = copy_topic(settings, bootstrap, source, target, limit=1)
        wait_committed(settings, bootstrap, group, target, ends, timeout_s=timeout_s, alive=pipeline.check_alive)
        before = done()
        started = time.monotonic()
        with RssSampler({stage: pid}) as level:
            ends, _ = copy_topic(settings, bootstrap, source, target, skip=first)
            wait_committed(
                settings,
                bootstrap,
                group,
                target,
                ends,
                timeout_s=timeout_s,
                alive=pipeline.check_alive,
                progress=sample,
            )
        seconds = time.monotonic() - started
        half = at_half[0] if at_half else None
        return WarmRun(
            Throughput(done() - before, seconds), highest(peak_rss_mb(pid), half), half, level.median_mb(stage)
        )
    finally:
        pipeline.stop()


def _end_to_end(
    settings: Settings, sources: list[Source], spec: BenchSpec, with_freshness: bool, progress: Callable[[str], None]
) -> EndToEnd:
    warmup_trail = settings.data_dir / "warmup-trail"
    warmup = GenerateSpec(events=WARMUP_EVENTS, accounts=1, seed=spec.seed, regions=(WARMUP_REGION,))
    write_files(generate_files(warmup), folder_writer(warmup_trail))
    with EmbeddedKafka(settings) as kafka:
        bootstrap = kafka.bootstrap
        registry = Registry(settings, bootstrap)
        registry.add(new_source(FIRST_ACCOUNT, WARMUP_REGION, f"file://{warmup_trail}"))
        progress("end to end: starting the worker and the sink, one warm-up file through")
        started = time.monotonic()
        pipeline = Pipeline(settings, bootstrap)
        pipeline.start()
        try:
            poller = poll_stage(settings, bootstrap)
            poller.poll_once()
            pipeline.wait_drained(timeout_s=spec.timeout_s)
            startup = time.monotonic() - started
            for source in sources:
                registry.add(source)
            progress("end to end: poller -> worker -> sink until everything is searchable")
            # The poller in a process of its own, as `trailhouse run` has it, so all three are sampled together.
            polling = Child(poll_alone, settings, bootstrap)
            with RssSampler({"poll": polling.pid, **pipeline.pids}) as levels:
                polled = polling.result(spec.timeout_s)
                pipeline.wait_drained(timeout_s=spec.timeout_s, every_s=DRAIN_CHECK_S)
            rate = Throughput(polled.records, time.monotonic() - polled.started)  # from its first listing
            median = {f"{name} (end to end)": mb for name, mb in levels.medians_mb.items() if name != "poll"}
            freshness = None
            if with_freshness and spec.freshness_seconds > 0:
                progress(
                    f"freshness: ~{spec.freshness_rate:,.0f} events/s in new files for {spec.freshness_seconds:.0f}s"
                )
                freshness = _freshness(settings, bootstrap, poller, sources[0].bucket, spec)
            rss = {f"{name} (end to end)": peak_rss_mb(pid) for name, pid in pipeline.pids.items()}
            rss["poll (end to end)"] = polled.peak_rss_mb
            rss["broker (end to end)"] = peak_rss_mb(_broker_pid(settings))
        finally:
            pipeline.stop()
    return EndToEnd(rate, startup, rss, median, levels.highest_total_mb, freshness)


def _broker_pid(settings: Settings) -> int | None:
    try:
        return int(json.loads((settings.data_dir / "kafka" / "broker.json").read_text())["broker_pid"])
    except (OSError, ValueError, KeyError):
        return None


def _freshness(settings: Settings, bootstrap: str, poller: Poller, bucket: str, spec: BenchSpec) -> Freshness:
    """Write a file of ~rate x TRICKLE_EVERY_S events every TRICKLE_EVERY_S seconds while the poller lists every
    poll_interval; each file's latency runs from its write to its last event committed by the sink."""
    put = folder_writer(Path(bucket.removeprefix("file://")))
    tracker = SearchableTracker(settings, bootstrap)
    stop = threading.Event()
    polling = threading.Thread(target=_poll_every, args=(poller, settings.poll_interval, stop), daemon=True)
    polling.start()
    started = time.monotonic()
    next_write, tick, events = started, 0, 0
    try:
        while True:
            now = time.monotonic()
            writing = now - started < spec.freshness_seconds
            if writing and now >= next_write:
                tick += 1
                trickle = GenerateSpec(
                    events=max(1, round(spec.freshness_rate * TRICKLE_EVERY_S)),
                    accounts=1,  # the first account's id does not depend on the seed, and a new seed per file
                    seed=spec.seed * 1000 + tick,  # gives new event ids
                    regions=spec.regions[:1],
                    start=datetime.now(UTC) - timedelta(seconds=TRICKLE_EVERY_S),
                    span=timedelta(seconds=TRICKLE_EVERY_S),
                )
                for log_file in generate_files(trickle):
                    put(log_file.key, log_file.body)
                    tracker.expect(log_file.key, log_file.records, time.monotonic())
                    events += log_file.records
                next_write += TRICKLE_EVERY_S
            tracker.update()
            if not writing and (tracker.pending == 0 or now - started > spec.freshness_seconds + 120):
                break
    finally:
        stop.set()
        polling.join(60)
        tracker.close()
    return Freshness(
        target_events_per_s=spec.freshness_rate,
        seconds=spec.freshness_seconds,
        files=tracker.files,
        events=events,
        latencies=tracker.latencies(),
        poll_interval=settings.poll_interval,
    )


def _poll_every(poller: Poller, interval: float, stop: threading.Event) -> None:
    """`poll_once` every `interval` (what `Poller.run` does for the sources it owns, without the group join)."""
    while not stop.is_set():
        started = time.monotonic()
        poller.poll_once()
        stop.wait(max(0.0, interval - (time.monotonic() - started)))


class SearchableTracker:
    """When each expected file became searchable: all its events are on `cloudtrail.events` and the sink group
    has committed past the last of them (the sink commits only what ClickHouse holds)."""

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        topic = settings.topic_events
        self._events = Consumer(
            client_options(settings, bootstrap) | {"group.id": "bench-tracker", "enable.auto.commit": False}
        )
        self._commits = Consumer(
            client_options(settings, bootstrap) | {"group.id": settings.sink_group, "enable.auto.commit": False}
        )
        starts = end_offsets(settings, bootstrap, topic)
        self._partitions = [TopicPartition(topic, p) for p in partitions_of(self._events, topic)]
        self._events.assign([TopicPartition(topic, p, starts.get(p, 0)) for p in starts])
        self._expected: dict[str, tuple[int, float]] = {}  # file name -> (events, written at)
        self._seen: dict[str, tuple[int, int, int]] = {}  # file name -> (events seen, partition, last offset)
        self._searchable: dict[str, float] = {}
        self._checked = 0.0

    @property
    def files(self) -> int:
        return len(self._expected)

    @property
    def pending(self) -> int:
        return len(self._expected) - len(self._searchable)

    def expect(self, key: str, events: int, written_at: float) -> None:
        self._expected[key.rsplit("/", 1)[-1]] = (events, written_at)

    def update(self) -> None:
        """Read new events (waits up to 50 ms), and every 100 ms the sink's commits."""
        for msg in self._events.consume(1000, timeout=0.05):
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("reading events: %s", msg.error())
                continue
            name = _EVENT.decode(msg.value())["object_key"].rsplit("/", 1)[-1]
            seen, _, last = self._seen.get(name, (0, 0, -1))
            self._seen[name] = (seen + 1, msg.partition(), max(last, msg.offset()))
        now = time.monotonic()
        if now - self._checked < 0.1:
            return
        self._checked = now
        committed = {tp.partition: tp.offset for tp in self._commits.committed(self._partitions, timeout=10)}
        for name, (events, _) in self._expected.items():
            seen, partition, last = self._seen.get(name, (0, 0, -1))
            if name not in self._searchable and seen >= events and committed.get(partition, -1) > last:
                self._searchable[name] = now

    def latencies(self) -> list[float]:
        return [
            self._searchable[name] - written
            for name, (_, written) in self._expected.items()
            if name in self._searchable
        ]

    def close(self) -> None:
        self._events.close()
        self._commits.close()
