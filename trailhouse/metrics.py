"""The Prometheus metrics of every stage, named in one place (the names are a public contract, listed with their
alerts in docs/operations.md), and the adapters that feed them and the stage's `Health` from each stage.

All metrics live in prometheus_client's default registry, next to its process metrics (CPU, memory, open
files); a process exposes the ones of the stages it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge

from trailhouse.health import Health

POLL_FILES = Counter("trailhouse_poll_files", "CloudTrail log files published to the raw topic", ["source"])
POLL_RECORDS = Counter("trailhouse_poll_records", "CloudTrail records published to the raw topic", ["source"])
POLL_DEAD_LETTERS = Counter(
    "trailhouse_poll_dead_letters", "files or records the poller sent to the dead-letter topic", ["source"]
)
POLL_BYTES = Counter("trailhouse_poll_bytes", "bytes of the files published, as stored in S3 (compressed)", ["source"])
POLL_ERRORS = Counter("trailhouse_poll_errors", "polls of a source that failed (source status ERROR)", ["source"])
POLL_LAG = Gauge(
    "trailhouse_poll_lag_seconds",
    "delivery time of the newest file seen in the source's bucket minus that of the last file checkpointed",
    ["source"],
)
POLL_SOURCES = Gauge("trailhouse_poll_sources", "sources this poller polls (its share of the pollers' group)")
SQS_MESSAGES = Counter(
    "trailhouse_sqs_messages",
    "SQS notifications handled, by outcome: done (deleted after the files were acknowledged), skipped (nothing "
    "to collect: digest, test event, unregistered source; deleted), unreadable (not an S3 notification; "
    "dead-lettered and deleted), retry (left for a later receive)",
    ["outcome"],
)
SOURCE_UP = Gauge("trailhouse_source_up", "1 when the source's last poll succeeded, 0 when it failed", ["source"])
SOURCE_LAST_POLL = Gauge(
    "trailhouse_source_last_success_timestamp_seconds", "end of the source's last successful poll", ["source"]
)

EMBEDDED_BROKER_BYTES = Gauge(
    "trailhouse_embedded_broker_resident_bytes", "memory the embedded Kafka broker holds (`trailhouse run`)"
)
EMBEDDED_BROKER_RESTARTS = Counter(
    "trailhouse_embedded_broker_restarts", "restarts of the embedded Kafka broker to give back its memory"
)
WORKER_MESSAGES = Counter("trailhouse_worker_messages", "raw-topic messages (log file chunks) taken by the worker")
REDELIVERED = Counter(
    "trailhouse_worker_redelivered_messages",
    "input messages delivered again after the worker handled them (a seek re-read them), skipped",
)
FAILED_BATCHES = Counter(
    "trailhouse_worker_failed_batches",
    "attempts to handle a batch of input messages that raised (retried, then message by message; see the log)",
)
REBALANCES = Counter("trailhouse_rebalances", "consumer group rebalances this process went through", ["group"])

SINK_ROWS = Counter("trailhouse_sink_rows", "rows the sink wrote to ClickHouse, by source topic", ["topic"])
SINK_LAST_WRITE = Gauge("trailhouse_sink_last_write_timestamp_seconds", "time of the sink's last ClickHouse write")

ASSIGNED = Gauge("trailhouse_assigned_partitions", "partitions this process holds in its consumer group", ["group"])
LAG = Gauge(
    "trailhouse_consumer_lag",
    "messages not yet committed by this process's consumer group on the partitions it holds",
    ["group", "topic", "partition"],
)


# --- poller --------------------------------------------------------------------------------------------------


@dataclass
class PollMetrics:
    """The poller's observer (producers.poller.PollObserver): counts per source, and beats per file."""

    health: Health

    def poll_started(self, sources: int) -> None:
        POLL_SOURCES.set(sources)
        self.health.set_ready(True, f"polling {sources} source(s)")

    def file_published(self, source_id: str, records: int, dead_letters: int, size: int) -> None:
        POLL_FILES.labels(source_id).inc()
        POLL_RECORDS.labels(source_id).inc(records)
        POLL_BYTES.labels(source_id).inc(size)
        if dead_letters:
            POLL_DEAD_LETTERS.labels(source_id).inc(dead_letters)
        self.health.beat()

    def position(self, source_id: str, checkpoint: datetime | None, newest: datetime | None) -> None:
        lag = (newest - checkpoint).total_seconds() if newest is not None and checkpoint is not None else 0.0
        POLL_LAG.labels(source_id).set(max(0.0, lag))

    def source_polled(self, source_id: str, error: str | None) -> None:
        SOURCE_UP.labels(source_id).set(0 if error else 1)
        if error:
            POLL_ERRORS.labels(source_id).inc()
        else:
            SOURCE_LAST_POLL.labels(source_id).set(time.time())
        self.health.beat()


# --- librdkafka consumers (the sink) -------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerStats:
    """What trailhouse reads from one librdkafka statistics report of a consumer group member."""

    group_state: str  # "up" once the coordinator is known
    join_state: str  # "steady" once the member holds its assignment
    assigned: int
    lag: dict[tuple[str, int], int] = field(default_factory=dict)

    @property
    def in_group(self) -> bool:
        return self.group_state == "up" and self.join_state == "steady"


def consumer_stats(report: dict[str, Any]) -> ConsumerStats:
    """Parse librdkafka's statistics JSON (STATISTICS.md); partitions whose lag is unknown (-1) are left out."""
    group = report.get("cgrp") or {}
    lag: dict[tuple[str, int], int] = {}
    for topic, info in (report.get("topics") or {}).items():
        for number, partition in (info.get("partitions") or {}).items():
            value = partition.get("consumer_lag", -1)
            if int(number) >= 0 and value >= 0 and partition.get("fetch_state") not in (None, "none", "stopped"):
                lag[(topic, int(number))] = value
    return ConsumerStats(
        group_state=group.get("state", ""),
        join_state=group.get("join_state", ""),
        assigned=int(group.get("assignment_size", 0)),
        lag=lag,
    )


@dataclass
class ConsumerGroupMetrics:
    """Feeds lag, assignment and readiness of a librdkafka group member from its statistics reports."""

    health: Health
    group: str
    _lagging: set[tuple[str, int]] = field(default_factory=set)
    _joined: bool = False

    def on_stats(self, report: dict[str, Any]) -> None:
        stats = consumer_stats(report)
        if stats.in_group != self._joined:
            self._joined = stats.in_group
            if not stats.in_group:
                REBALANCES.labels(self.group).inc()
        ASSIGNED.labels(self.group).set(stats.assigned)
        for topic, partition in self._lagging - set(stats.lag):
            LAG.remove(self.group, topic, str(partition))  # moved to another member: its lag is reported there
        for (topic, partition), value in stats.lag.items():
            LAG.labels(self.group, topic, str(partition)).set(value)
        self._lagging = set(stats.lag)
        detail = f"{stats.assigned} partition(s) of group {self.group}" if stats.in_group else "joining the group"
        self.health.set_ready(stats.in_group, detail)


def sink_writes(health: Health) -> Callable[[str, int], None]:
    """The sink's `on_write` callback: rows per topic, time of the last write."""

    def on_write(topic: str, rows: int) -> None:
        SINK_ROWS.labels(topic).inc(rows)
        SINK_LAST_WRITE.set(time.time())
        health.beat()

    return on_write
