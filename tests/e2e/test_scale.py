"""Scaling past one process: several workers and sinks on one broker share the partitions and ingest a data set
exactly once; a worker killed mid-run hands its partitions over and nothing is lost or doubled in search.

Each stage is a separate `trailhouse` process, as in a deployment. chDB opens a data directory from one process
only, so each sink here writes its own ClickHouse directory (in production they share one server); a record in
two directories would be a record ingested twice.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import wait_drained
from tests.e2e.cli import StageProcess, Trailhouse, stage_env, until
from trailhouse.config import Settings, load_settings
from trailhouse.generate import GenerateSpec, folder_writer, generate_files, write_files
from trailhouse.kafka import committed_offsets, end_offsets, is_drained
from trailhouse.processes import free_port
from trailhouse.registry import Registry
from trailhouse.sources import new_source

pytestmark = pytest.mark.e2e

PARTITIONS = 6
REGIONS = ("us-east-1", "eu-west-1")


SEEDS = (1, 2)  # the accounts (and the event ids) of generated logs follow from the seed


def generate(folder: Path, *, events: int, seed: int, start: datetime) -> set[str]:
    """Write a trail's files for 4 accounts x 2 regions under `folder`; return the event ids written."""
    files = list(generate_files(GenerateSpec(events=events, accounts=4, seed=seed, regions=REGIONS, start=start)))
    write_files(files, folder_writer(folder))
    return {r["eventID"] for f in files for r in json.loads(gzip.decompress(f.body))["Records"]}


def caught_up(settings: Settings, broker: str, group: str, topic: str) -> Callable[[], bool]:
    """A condition: `group` has committed everything `topic` holds now."""
    ends = end_offsets(settings, broker, topic)
    return lambda: is_drained(committed_offsets(settings, broker, group, topic), ends)


class Deployment:
    """Stage processes sharing one broker; stopped (SIGTERM, then SIGKILL) at the end of the test."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.stages: list[StageProcess] = []

    def start(self, stage: str, name: str, **env: str) -> StageProcess:
        environment = {**Trailhouse(self.tmp_path / name, self.env).env, **env}
        process = StageProcess(stage, environment, free_port(), self.tmp_path, name)
        self.stages.append(process)
        return process

    def store(self, name: str) -> dict[str, str]:
        return {"TRAILHOUSE_CLICKHOUSE_URL": f"chdb://{self.tmp_path / name}"}

    def close(self) -> None:
        for stage in self.stages:
            if stage.process.poll() is None:
                stage.process.kill()
                stage.process.wait()


@pytest.fixture
def deployment(tmp_path: Path, broker: str, unique: str) -> Iterator[Deployment]:
    deployed = Deployment(tmp_path, stage_env(broker, unique, TRAILHOUSE_KAFKA_PARTITIONS=str(PARTITIONS)))
    yield deployed
    deployed.close()


def register_sources(settings: Settings, broker: str, folder: Path) -> None:
    from trailhouse.generate import account_ids
    from trailhouse.kafka import ensure_topics

    ensure_topics(settings, broker)
    registry = Registry(settings, broker)
    for account in sorted({a for seed in SEEDS for a in account_ids(4, seed)}):
        for region in REGIONS:
            registry.add(new_source(account, region, f"file://{folder}"))


def searched_ids(tmp_path: Path, env: dict[str, str], store: dict[str, str]) -> list[str]:
    """Event ids as `trailhouse search` shows them (each id once per record it considers distinct)."""
    found = Trailhouse(tmp_path / "search", {**env, **store})("search", "*", "--format", "json", "--limit", "1000000")
    return [json.loads(line[: line.index(',"record":')] + "}")["event_id"] for line in found.stdout.splitlines()]


def test_several_workers_and_sinks_share_the_partitions_and_ingest_once(deployment, broker, tmp_path, unique):
    folder = tmp_path / "bucket"
    expected = generate(folder, events=6000, seed=1, start=datetime(2026, 3, 1, tzinfo=UTC))
    settings = load_settings(environ=deployment.env)
    register_sources(settings, broker, folder)

    sinks = [deployment.start("sink", f"sink{i}", **deployment.store(f"clickhouse{i}")) for i in range(2)]
    workers = [deployment.start("worker", f"worker{i}") for i in range(3)]
    stages = sinks + workers
    until(lambda: all(s.get("/readyz")[0] == 200 for s in stages), "readiness of every stage", 180, stages)

    Trailhouse(tmp_path / "poller", deployment.env)("poll", "--once")
    wait_drained(settings, broker, settings.worker_group, settings.topic_raw, timeout=240)
    wait_drained(settings, broker, settings.sink_group, settings.topic_events, timeout=240)

    for stage in stages:
        status, body = stage.get("/healthz")
        assert status == 200 and json.loads(body)["live"], (stage.name, body)
    taken = {w.name: w.metric("trailhouse_worker_messages_total") for w in workers}
    written = {s.name: s.metric("trailhouse_sink_rows_total", topic=settings.topic_events) for s in sinks}
    assert sum(1 for n in taken.values() if n > 0) >= 2, f"the raw partitions were not shared: {taken}"
    assert all(n > 0 for n in written.values()), f"the events partitions were not shared: {written}"
    assert sum(written.values()) == len(expected)

    assert {s.name: s.stop() for s in stages} == {s.name: 0 for s in stages}
    found = [searched_ids(tmp_path, deployment.env, deployment.store(f"clickhouse{i}")) for i in range(2)]
    assert sorted(found[0] + found[1]) == sorted(expected), "an event is missing, doubled, or in both stores"


@pytest.mark.timeout(240)
def test_a_killed_worker_hands_its_partitions_over_and_nothing_is_lost_or_doubled(deployment, broker, tmp_path, unique):
    folder = tmp_path / "bucket"
    first = generate(folder, events=20_000, seed=1, start=datetime(2026, 3, 1, tzinfo=UTC))
    settings = load_settings(environ=deployment.env)
    register_sources(settings, broker, folder)
    poller = Trailhouse(tmp_path / "poller", deployment.env)

    sink = deployment.start("sink", "sink", **deployment.store("clickhouse"))
    workers = [deployment.start("worker", f"worker{i}") for i in range(2)]
    until(lambda: all(s.get("/readyz")[0] == 200 for s in [sink, *workers]), "readiness", 180, [sink, *workers])

    poller("poll", "--once")
    until(lambda: all(w.metric("trailhouse_worker_messages_total") > 0 for w in workers), "work", 120, workers)
    victim, survivor = workers
    victim.process.kill()  # SIGKILL: no commit, no leaving the group; its uncommitted chunks are read again
    victim.process.wait()

    # Files published after the kill land on every partition, the victim's former ones included.
    second = generate(folder, events=4000, seed=2, start=datetime(2026, 3, 1, tzinfo=UTC) + timedelta(days=2))
    poller("poll", "--once")
    stages = [survivor, sink]
    until(caught_up(settings, broker, settings.worker_group, settings.topic_raw), "worker catch-up", 150, stages)
    until(caught_up(settings, broker, settings.sink_group, settings.topic_events), "sink catch-up", 120, stages)

    assert survivor.metric("trailhouse_rebalances_total") >= 1
    assert {s.name: s.stop() for s in (sink, survivor)} == {"sink": 0, "worker1": 0}
    found = searched_ids(tmp_path, deployment.env, deployment.store("clickhouse"))
    assert len(found) == len(set(found)), "an event shows twice in search"
    assert set(found) == first | second, f"{len((first | second) - set(found))} event(s) lost"
