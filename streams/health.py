"""The worker's health and metrics: a Faust sensor and a heartbeat timer feed trailhouse's `Health` and metrics,
served by the same /healthz, /readyz and /metrics server as the other stages (trailhouse/health.py).

Why not Faust's own web server: it starts only after table recovery, so a liveness probe on it would restart a
worker that is still recovering a large table; its port must be ≥ 1024 and it brings its own pages. Ours is up
from the first second, and still proves the event loop turns: the heartbeat is a Faust timer, so a blocked loop
stops beating and /healthz turns 503. Faust's web server remains available for table routes (status views).

Signals:
- heartbeat every `HEARTBEAT_S` from the event loop, and on every message taken → liveness;
- rebalance start/end → readiness (ready while holding an assignment) and `trailhouse_rebalances_total`;
- per assigned raw-topic partition, `trailhouse_consumer_lag` = high watermark (from the last fetch, right even
  on brokers whose ListOffsets is off, see NOTES.md) - committed offset.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import faust
from faust.types import TP

from trailhouse.config import Settings
from trailhouse.health import Health, HealthServer, serve
from trailhouse.metrics import ASSIGNED, LAG, REBALANCES, WORKER_MESSAGES

HEARTBEAT_S = 5.0


class WorkerSensor(faust.Sensor):
    """Faust calls these from its event loop; each does O(1) work."""

    def __init__(self, health: Health, group: str) -> None:
        super().__init__()
        self._health = health
        self._group = group

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        WORKER_MESSAGES.inc()
        self._health.beat()

    def on_rebalance_start(self, app: faust.App) -> dict[str, Any]:
        REBALANCES.labels(self._group).inc()
        self._health.set_ready(False, "rebalancing")
        return super().on_rebalance_start(app)

    def on_rebalance_end(self, app: faust.App, state: dict[str, Any]) -> None:
        assigned = len(app.consumer.assignment())
        ASSIGNED.labels(self._group).set(assigned)
        self._health.set_ready(True, f"{assigned} partition(s) of group {self._group}")
        super().on_rebalance_end(app, state)


def commit_positions(consumer: Any, topics: Collection[str]) -> tuple[dict[TP, int], dict[TP, int]]:
    """End and committed offset of each held partition of `topics` fetched from so far, as Faust sees them (its
    record of its commits holds the next offset to read; a partition never committed counts from 0, where new
    groups start, so a worker stuck at its start shows as behind)."""
    known = getattr(consumer, "_committed_offset", {})
    ends, committed = {}, {}
    for tp in consumer.assignment():
        end = consumer.highwater(tp) if tp.topic in topics else None
        if end is not None and end >= 0:
            ends[tp], committed[tp] = end, known.get(tp) or 0
    return ends, committed


def raw_lag(consumer: Any, topic: str) -> dict[int, int]:
    """Messages behind per held partition of `topic`; partitions not fetched yet are left out."""
    ends, committed = commit_positions(consumer, {topic})
    return {tp.partition: max(0, end - committed[tp]) for tp, end in ends.items()}


def observe_worker(app: faust.App, settings: Settings) -> HealthServer | None:
    """Install the sensor and the heartbeat on `app`, and start the worker's server (None when its port is 0)."""
    health = Health("worker", stall_after_s=max(60.0, 3 * settings.rebalance_timeout))
    app.sensors.add(WorkerSensor(health, settings.worker_group))
    reported: set[int] = set()

    @app.timer(interval=HEARTBEAT_S, name="trailhouse-heartbeat")
    async def heartbeat() -> None:
        health.beat()
        lag = raw_lag(app.consumer, settings.topic_raw)
        for partition in reported - set(lag):
            LAG.remove(settings.worker_group, settings.topic_raw, str(partition))
        for partition, value in lag.items():
            LAG.labels(settings.worker_group, settings.topic_raw, str(partition)).set(value)
        reported.clear()
        reported.update(lag)

    return serve(health, settings)
