"""What `trailhouse bench pipeline` runs in child processes, and the small Kafka helpers it measures with.

Each measured process is its own: chDB allows one data path per process (the baseline, the sink stage and the
final counts each open another one), and a process's peak RSS is only its own stage's when it runs nothing else.
Functions run in a child are plain top-level functions returning plain data (they cross a spawn boundary).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from trailhouse.config import Settings
from trailhouse.errors import KafkaUnavailable, TrailhouseError
from trailhouse.kafka import (
    client_options,
    committed_offsets,
    end_offsets,
    is_drained,
    partitions_of,
    producer_options,
    translate,
)
from trailhouse.processes import die_with_parent, peak_rss_mb, rss_mb

T = TypeVar("T")

# The events table's columns that a CloudTrail record gives directly, as chDB extracts them from the JSON text.
_BASELINE_COLUMNS = {
    "event_id": "JSONExtractString(r, 'eventID')",
    "event_time": "parseDateTime64BestEffort(JSONExtractString(r, 'eventTime'), 3, 'UTC')",
    "event_version": "JSONExtractString(r, 'eventVersion')",
    "event_type": "JSONExtractString(r, 'eventType')",
    "event_category": "JSONExtractString(r, 'eventCategory')",
    "event_source": "JSONExtractString(r, 'eventSource')",
    "event_name": "JSONExtractString(r, 'eventName')",
    "aws_region": "JSONExtractString(r, 'awsRegion')",
    "recipient_account_id": "JSONExtractString(r, 'recipientAccountId')",
    "user_type": "JSONExtractString(r, 'userIdentity', 'type')",
    "user_arn": "JSONExtractString(r, 'userIdentity', 'arn')",
    "user_name": "JSONExtractString(r, 'userIdentity', 'userName')",
    "user_account_id": "JSONExtractString(r, 'userIdentity', 'accountId')",
    "access_key_id": "JSONExtractString(r, 'userIdentity', 'accessKeyId')",
    "source_ip": "JSONExtractString(r, 'sourceIPAddress')",
    "user_agent": "JSONExtractString(r, 'userAgent')",
    "error_code": "JSONExtractString(r, 'errorCode')",
    "error_message": "JSONExtractString(r, 'errorMessage')",
    "read_only": "JSONExtract(r, 'readOnly', 'Nullable(Bool)')",
    "management_event": "JSONExtract(r, 'managementEvent', 'Nullable(Bool)')",
    "request_id": "JSONExtractString(r, 'requestID')",
    "object_key": "_path",
    "ingest_time": "now64(3)",
    "record": "r",
}


class Child:
    """`fn(*args)` running in a fresh (spawned) process, whose pid is known while it runs (so its memory can be
    sampled alongside the stages it runs with); `result()` waits for what it returned or raises what it raised."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._name = getattr(fn, "__name__", repr(fn))
        self._results, sender = context.Pipe(duplex=False)
        self._process = context.Process(target=_send_result, args=(sender, fn, args), name=f"bench-{self._name}")
        self._process.start()
        sender.close()  # the child holds the other copy: its exit ends the pipe

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def result(self, timeout_s: float | None = None) -> Any:
        """What `fn` returned; raises what it raised, or says how the process ended without returning. With
        `timeout_s` (None: wait as long as it runs) a child still running by then is killed."""
        try:
            if not self._results.poll(timeout_s):
                self._process.kill()
                self._process.join()  # reaped: no zombie left behind the error
                raise TrailhouseError(f"the bench's {self._name} did not end within {timeout_s:.0f}s")
            ok, value = self._results.recv()
        except EOFError:
            self._process.join()
            raise TrailhouseError(
                f"the bench's {self._name} exited with status {self._process.exitcode} before it returned "
                "(killed, or out of memory?)"
            ) from None
        finally:
            self._results.close()
        self._process.join()
        if not ok:
            raise value
        return value


def _send_result(results: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    die_with_parent()  # a bench killed mid-run leaves no poller publishing on
    try:
        outcome: tuple[bool, Any] = (True, fn(*args))
    except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
        outcome = (False, exc)
    try:
        results.send(outcome)
    except Exception as exc:  # noqa: BLE001 - an exception that does not pickle still ends the parent's wait
        results.send((False, TrailhouseError(f"{fn!r} failed: {outcome[1]!r} ({exc})")))


def in_child(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` in a fresh (spawned) process and return its result."""
    return cast(T, Child(fn, *args).result())


def own_peak_rss_mb() -> float:
    """This process's peak resident set size since it started its program (VmHWM).

    Not `ru_maxrss`: Linux carries it across fork and exec, so a child spawned by `in_child` would report at least
    the bench process's own resident size at the time of the fork (at 4N, after the N phases, ~180 MB), not its
    own. `ru_maxrss` only where /proc cannot say.
    """
    return peak_rss_mb(os.getpid()) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def highest(*readings_mb: float | None) -> float | None:
    """The highest of several VmHWM readings of one process, None where none could be read.

    VmHWM is not exactly monotonic. The kernel raises its mark only on some of the paths that lower the resident
    size ("such snapshots can always be inconsistent", fs/proc/task_mmu.c), and since Linux 6.2 it reads the page
    counts per CPU, approximately. So a reading at the end of a run can come out under one taken halfway (CI,
    2026-12-07); the peak of the run is the higher of the two.
    """
    return max((mb for mb in readings_mb if mb is not None), default=None)


class RssSampler:
    """Samples the resident size of several processes at the same moments, in a thread, while a measurement runs.

    A peak (VmHWM) is one moment: in the sink it is an insert meeting one of the embedded engine's merges, and a
    longer run has more such moments, so its peak can rise with N while the level it works at does not (NOTES.md,
    2026-11-25). The median of a process's samples tells the level apart from the moments. And the processes'
    peaks need not coincide: their sum overstates what they hold together, which the highest sum of one round of
    samples does not (it can miss a moment between two rounds: the two bracket the peak of the sum).
    """

    def __init__(self, pids: Mapping[str, int | None], every_s: float = 0.05) -> None:
        self._pids, self._every_s = dict(pids), every_s
        self._rounds: list[dict[str, float]] = []  # per round, each process that could be read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def median_mb(self, name: str) -> float | None:
        samples = [mb for sampled in self._rounds if (mb := sampled.get(name)) is not None]
        return statistics.median(samples) if samples else None

    @property
    def medians_mb(self) -> dict[str, float | None]:
        return {name: self.median_mb(name) for name in self._pids}

    @property
    def highest_total_mb(self) -> float | None:
        """The highest sum of one round; None when a process had no pid to sample. A process that has not started
        or has exited by a round (its /proc is gone) holds nothing then: the poller ends before the sink does."""
        if any(pid is None for pid in self._pids.values()):
            return None
        return max((sum(sampled.values()) for sampled in self._rounds), default=None)

    @property
    def round_count(self) -> int:
        return len(self._rounds)

    def _sample(self) -> None:
        while True:
            sampled = {name: mb for name, pid in self._pids.items() if (mb := rss_mb(pid)) is not None}
            if sampled:
                self._rounds.append(sampled)
            if self._stop.wait(self._every_s):
                return


# --- run in child processes -----------------------------------------------------------------------------------


def chdb_baseline(folder: Path, dsn: str, database: str) -> tuple[int, float, float]:
    """chDB reading the .json.gz files straight into the events table: (rows, seconds, peak RSS MB).

    One INSERT ... SELECT over file(..., 'JSONAsString'): each file is one JSON document, arrayJoin over its
    Records, JSON functions extract the columns; the same table (migrations, skip indexes and all) as the sink's.
    """
    from sinks.clickhouse import call, connect
    from sinks.ddl import Layout
    from sinks.migrations import migrate

    client = connect(dsn)
    migrate(client, Layout(database))
    columns = ", ".join(_BASELINE_COLUMNS)
    values = ", ".join(_BASELINE_COLUMNS.values())
    source = f"file('{folder}/**/*.json.gz', 'JSONAsString')"
    started = time.monotonic()
    call(
        "run the chDB baseline",
        lambda: client.command(
            f"INSERT INTO {database}.events ({columns}) SELECT {values} "
            f"FROM (SELECT arrayJoin(JSONExtractArrayRaw(json, 'Records')) AS r, _path FROM {source}) "
            "SETTINGS max_threads = 2"
        ),
    )
    seconds = time.monotonic() - started
    rows = int(client.command(f"SELECT count() FROM {database}.events"))  # type: ignore[arg-type]
    return rows, seconds, own_peak_rss_mb()


@dataclass(frozen=True)
class PollRun:
    """What one pass of the poller over every registered source did, measured in its own process."""

    files: int
    records: int
    started: float  # time.monotonic() as it began: one clock for every process of the machine (CLOCK_MONOTONIC)
    seconds: float
    peak_rss_mb: float


def poll_alone(settings: Settings, bootstrap: str) -> PollRun:
    """The poller publishing every registered source's files once."""
    from trailhouse.stages import poll_stage

    poller = poll_stage(settings, bootstrap)
    started = time.monotonic()
    report = poller.poll_once()
    seconds = time.monotonic() - started
    if report.failed:
        raise TrailhouseError(f"the poller failed: {report.failed[0].source_id}: {report.failed[0].error}")
    return PollRun(report.files, report.records, started, seconds, own_peak_rss_mb())


def count_events(dsn: str, database: str) -> tuple[int, int]:
    """(rows, distinct event ids) of the events table as a search sees it (FINAL: no duplicate before a merge)."""
    from sinks.clickhouse import connect

    client = connect(dsn)
    rows, ids = client.query(f"SELECT count(), uniqExact(event_id) FROM {database}.events FINAL").result_rows[0]
    return int(rows), int(ids)


# --- Kafka helpers ----------------------------------------------------------------------------------------------


def total(offsets: dict[int, int]) -> int:
    return sum(offsets.values())


def wait_committed(
    settings: Settings,
    bootstrap: str,
    group: str,
    topic: str,
    ends: dict[int, int],
    *,
    timeout_s: float,
    alive: Callable[[], None] = lambda: None,
    progress: Callable[[float], None] = lambda done: None,
) -> None:
    """Poll until `group` has committed `ends` of `topic` (commits follow the work, so it is done); `alive()`
    raises when the stage died meanwhile; `progress` gets the part of `ends` committed at each poll."""
    deadline = time.monotonic() + timeout_s
    while not is_drained(committed := committed_offsets(settings, bootstrap, group, topic), ends):
        progress(total({p: min(committed.get(p, 0), end) for p, end in ends.items()}) / max(1, total(ends)))
        alive()
        if time.monotonic() > deadline:
            raise TrailhouseError(f"{group} did not catch up with {topic} within {timeout_s:.0f}s")
        time.sleep(0.1)


def copy_topic(
    settings: Settings,
    bootstrap: str,
    source: str,
    target: str,
    *,
    limit: int | None = None,
    skip: Iterable[tuple[int, int]] = (),
) -> tuple[dict[int, int], list[tuple[int, int]]]:
    """Copy `source`, up to its end now, into `target`: same partitions, keys and values, in order.

    Returns `target`'s end offsets afterwards and the (partition, offset) of each message copied from `source`.
    `limit` stops after that many messages; `skip` leaves those (partition, offset) out (already copied).
    """
    skipped = set(skip)
    consumer = Consumer(
        client_options(settings, bootstrap)
        | {"group.id": "trailhouse-bench-copy", "enable.auto.commit": False, "enable.partition.eof": True}
    )
    producer = Producer(producer_options(settings, bootstrap) | {"linger.ms": 5})
    copied: list[tuple[int, int]] = []
    try:
        partitions = partitions_of(consumer, source)
        consumer.assign([TopicPartition(source, p, 0) for p in partitions])
        at_end: set[int] = set()
        while len(at_end) < len(partitions) and (limit is None or len(copied) < limit):
            for msg in consumer.consume(500, timeout=0.5):
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise translate(KafkaException(error), f"read {source}")
                    at_end.add(msg.partition())
                    continue
                if (msg.partition(), msg.offset()) in skipped or (limit is not None and len(copied) >= limit):
                    continue
                _produce(producer, target, msg.partition(), msg.key(), msg.value())
                copied.append((msg.partition(), msg.offset()))
        if producer.flush(60):
            raise KafkaUnavailable(f"could not copy {source} into {target}: messages unacknowledged")
    finally:
        consumer.close()
    return end_offsets(settings, bootstrap, target), copied


def _produce(producer: Producer, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
    try:
        producer.produce(topic, key=key, value=value, partition=partition)
    except BufferError:
        producer.poll(1.0)
        producer.produce(topic, key=key, value=value, partition=partition)
    producer.poll(0)
