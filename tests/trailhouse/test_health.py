"""Health, readiness and metrics: the rules (pure, with a fake clock) and the server every stage runs."""

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from trailhouse.config import Settings
from trailhouse.errors import ConfigError
from trailhouse.health import Health, HealthServer, port_of, run_ports
from trailhouse.metrics import ConsumerGroupMetrics, PollMetrics, consumer_stats
from trailhouse.processes import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stage_is_live_while_it_beats_and_ready_only_when_it_says_so():
    clock = Clock()
    health = Health("sink", stall_after_s=60, startup_grace_s=300, clock=clock)
    assert health.report() == {"stage": "sink", "live": True, "ready": False, "detail": "starting"}
    health.set_ready(True, "3 partition(s)")
    clock.now += 59
    assert health.report()["ready"]
    clock.now += 2
    report = health.report()
    assert not report["live"] and not report["ready"] and "stalled: no progress for 61s" in report["detail"]
    health.beat()
    assert health.report()["live"]


def test_a_stage_that_never_starts_is_dead_after_the_grace():
    clock = Clock()
    health = Health("worker", stall_after_s=60, startup_grace_s=300, clock=clock)
    clock.now += 299
    assert health.report()["live"]
    clock.now += 2
    assert health.report() == {
        "stage": "worker",
        "live": False,
        "ready": False,
        "detail": "did not start within 300s",
    }


def test_stopping_is_live_but_not_ready_and_failure_is_neither():
    health = Health("poll", stall_after_s=60)
    health.set_ready(True, "polling")
    health.stopping()
    assert health.report()["live"] and not health.report()["ready"]
    health.failed("Kafka refused to list topics")
    assert health.report() == {
        "stage": "poll",
        "live": False,
        "ready": False,
        "detail": "failed: Kafka refused to list topics",
    }


def test_ports_one_per_stage_and_the_layout_of_run():
    assert [port_of(Settings(), s) for s in ("poll", "worker", "sink")] == [9401, 9402, 9403]
    assert port_of(Settings(http_port=8080), "sink") == 8080
    assert run_ports(Settings()) == {"poll": 9401, "worker": 9402, "sink": 9403}
    assert run_ports(Settings(http_port=7000)) == {"poll": 7000, "worker": 7001, "sink": 7002}
    assert run_ports(Settings(http_port=0)) == {"poll": 0, "worker": 0, "sink": 0}


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_server_answers_probes_and_scrapes():
    health = Health("poll", stall_after_s=60)
    server = HealthServer(health, "127.0.0.1", free_port())
    base = f"http://127.0.0.1:{server.port}"
    try:
        status, body = get(base + "/readyz")
        assert status == 503 and json.loads(body)["detail"] == "starting"
        assert get(base + "/healthz")[0] == 200

        PollMetrics(health).poll_started(2)
        PollMetrics(health).file_published("cloudtrail-123456789012-us-east-1", records=40, dead_letters=1, size=900)
        hour = datetime(2026, 1, 1, 10, tzinfo=UTC)
        PollMetrics(health).position("cloudtrail-123456789012-us-east-1", hour, hour + timedelta(hours=1))
        PollMetrics(health).source_polled("cloudtrail-123456789012-us-east-1", error=None)
        PollMetrics(health).source_polled("cloudtrail-210987654321-eu-west-1", error="access denied")
        assert get(base + "/readyz") == (
            200,
            '{"stage": "poll", "live": true, "ready": true, "detail": "polling 2 source(s)"}\n',
        )
        status, metrics = get(base + "/metrics")
        assert status == 200
        assert 'trailhouse_poll_records_total{source="cloudtrail-123456789012-us-east-1"} 40.0' in metrics
        assert 'trailhouse_poll_bytes_total{source="cloudtrail-123456789012-us-east-1"} 900.0' in metrics
        assert 'trailhouse_poll_lag_seconds{source="cloudtrail-123456789012-us-east-1"} 3600.0' in metrics
        assert "trailhouse_poll_sources 2.0" in metrics
        assert 'trailhouse_source_up{source="cloudtrail-210987654321-eu-west-1"} 0.0' in metrics
        assert "process_resident_memory_bytes" in metrics
        assert get(base + "/nope")[0] == 404
    finally:
        server.close()


def test_a_taken_port_is_a_clear_error():
    first = HealthServer(Health("sink", stall_after_s=60), "127.0.0.1", free_port())
    try:
        with pytest.raises(ConfigError, match="set --http-port to a free one, or 0 for no server"):
            HealthServer(Health("sink", stall_after_s=60), "127.0.0.1", first.port)
    finally:
        first.close()


LIBRDKAFKA_STATS = {
    "name": "trailhouse#consumer-1",
    "type": "consumer",
    "cgrp": {"state": "up", "join_state": "steady", "assignment_size": 2, "rebalance_cnt": 1},
    "topics": {
        "cloudtrail.events": {
            "partitions": {
                "0": {"fetch_state": "active", "consumer_lag": 120},
                "1": {"fetch_state": "active", "consumer_lag": -1},
                "2": {"fetch_state": "none", "consumer_lag": 7},
                "-1": {"fetch_state": "none", "consumer_lag": -1},
            }
        }
    },
}


def test_librdkafka_statistics_give_group_state_and_lag_of_held_partitions():
    stats = consumer_stats(LIBRDKAFKA_STATS)
    assert stats.in_group and stats.assigned == 2
    assert stats.lag == {("cloudtrail.events", 0): 120}
    assert not consumer_stats({"cgrp": {"state": "up", "join_state": "wait-join"}}).in_group


def test_statistics_make_the_sink_ready_and_report_lag():
    from prometheus_client import REGISTRY

    health = Health("sink", stall_after_s=60)
    ConsumerGroupMetrics(health, "sink-test-group").on_stats(LIBRDKAFKA_STATS)
    assert health.report()["ready"]
    labels = {"group": "sink-test-group", "topic": "cloudtrail.events", "partition": "0"}
    assert REGISTRY.get_sample_value("trailhouse_consumer_lag", labels) == 120
    assert REGISTRY.get_sample_value("trailhouse_assigned_partitions", {"group": "sink-test-group"}) == 2
