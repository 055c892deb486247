"""Several `trailhouse poll` processes share the sources through their consumer group on the registry topic:
each source is polled by one of them, a source registered while they run is picked up, and when one is killed
the other takes its sources over."""

from __future__ import annotations

import gzip
import json
import signal
from collections import defaultdict
from pathlib import Path

from schemas import Codec
from tests.e2e.cli import StageProcess, Trailhouse
from tests.e2e.test_scale import until
from trailhouse.config import load_settings
from trailhouse.generate import folder_writer
from trailhouse.kafka import ensure_topics, read_to_end
from trailhouse.processes import free_port
from trailhouse.registry import Registry
from trailhouse.sources import new_source

ACCOUNTS = [f"{100000000000 + 7919 * i:012d}" for i in range(10)]


def _write(root: Path, account: str, hhmm: str) -> str:
    key = f"AWSLogs/{account}/CloudTrail/us-east-1/2026/11/24/{account}_CloudTrail_us-east-1_20261124T{hhmm}Z_x.json.gz"
    body = {"Records": [{"eventID": f"{account}-{hhmm}", "eventName": "ListBuckets"}]}
    folder_writer(root)(key, gzip.compress(json.dumps(body).encode()))
    return key


def test_two_pollers_share_ten_sources_pick_up_a_new_one_and_take_over_when_one_is_killed(broker, tmp_path, unique):
    root = tmp_path / "bucket"
    env = {
        "TRAILHOUSE_KAFKA_BOOTSTRAP": broker,
        "TRAILHOUSE_KAFKA_PARTITIONS": "6",
        "TRAILHOUSE_TOPIC_RAW": f"raw-{unique}",
        "TRAILHOUSE_TOPIC_DLQ": f"dlq-{unique}",
        "TRAILHOUSE_TOPIC_INSIGHTS": f"insights-{unique}",
        "TRAILHOUSE_TOPIC_REGISTRY": f"registry-{unique}",
        "TRAILHOUSE_TOPIC_CHECKPOINTS": f"checkpoints-{unique}",
        "TRAILHOUSE_POLL_GROUP": f"poll-{unique}",
        "TRAILHOUSE_POLL_INTERVAL": "1",
    }
    settings = load_settings(environ=env)
    ensure_topics(settings, broker)
    registry = Registry(settings, broker)
    for account in ACCOUNTS:
        registry.add(new_source(account, "us-east-1", f"file://{root}"))
    written = [_write(root, account, "1000") for account in ACCOUNTS]

    def published() -> list[str]:
        codec = Codec.of("RawBatch")
        return [codec.decode(v)["object_key"] for _, v in read_to_end(settings, broker, settings.topic_raw)]

    def polled_by(poller: StageProcess) -> float:
        return poller.metric("trailhouse_poll_sources")

    base = Trailhouse(tmp_path / "data", env).env
    pollers = []
    try:
        first = StageProcess("poll", base, free_port(), tmp_path, "poll-a")
        pollers.append(first)
        until(lambda: polled_by(first) == 10, "first poller polling all ten sources", 120, pollers)
        second = StageProcess("poll", base, free_port(), tmp_path, "poll-b")
        pollers.append(second)
        until(
            lambda: polled_by(second) > 0 and polled_by(first) + polled_by(second) == 10,
            "the sources shared between the two pollers",
            120,
            pollers,
        )
        until(lambda: sorted(published()) == sorted(written), "the first files", 120, pollers)

        written += [_write(root, account, "1005") for account in ACCOUNTS]
        late_account = f"{200000000000:012d}"
        registry.add(new_source(late_account, "us-east-1", f"file://{root}"))  # while both run
        written.append(_write(root, late_account, "1005"))
        until(lambda: sorted(published()) == sorted(written), "the second files and the new source's", 120, pollers)
        assert polled_by(first) + polled_by(second) == 11

        second.process.send_signal(signal.SIGKILL)  # no leaving the group: its session has to time out
        second.process.wait()
        pollers.remove(second)
        written += [_write(root, account, "1010") for account in [*ACCOUNTS, late_account]]
        until(lambda: sorted(published()) == sorted(written), "the files of the killed poller's sources", 180, pollers)
        until(lambda: polled_by(first) == 11, "the survivor polling every source", 60, pollers)
    finally:
        for poller in pollers:
            poller.stop()

    keys = published()
    assert len(keys) == len(set(keys)), "a file was published twice: a source was polled by two pollers at once"
    writers: dict[str, list[str]] = defaultdict(list)
    for _, value in read_to_end(settings, broker, settings.topic_checkpoints):
        checkpoint = Codec.of("Checkpoint").decode(value)
        if not writers[checkpoint["source_id"]] or writers[checkpoint["source_id"]][-1] != checkpoint["poller"]:
            writers[checkpoint["source_id"]].append(checkpoint["poller"])
    assert len({w for sequence in writers.values() for w in sequence}) == 2, "both pollers had a share"
    assert all(len(sequence) <= 3 for sequence in writers.values()), f"sources moved back and forth: {writers}"
