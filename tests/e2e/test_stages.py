"""`trailhouse poll`, `worker` and `sink` as separate processes sharing one Kafka, as a scaled-out deployment runs."""

import json
import signal
import subprocess
import sys

import pytest

from tests.conftest import lay_out_real_files, wait_drained
from tests.e2e.cli import Trailhouse, stage_env
from trailhouse.config import load_settings
from trailhouse.generate import folder_writer
from trailhouse.processes import free_port

pytestmark = pytest.mark.e2e


def test_each_stage_runs_alone_against_a_shared_kafka(broker, tmp_path, unique, real_files):
    folder = tmp_path / "bucket"
    lay_out_real_files(real_files[:10], folder_writer(folder))
    env = stage_env(
        broker,
        unique,
        TRAILHOUSE_CLICKHOUSE_URL=f"chdb://{tmp_path / 'clickhouse'}",
        TRAILHOUSE_WORKER_WEB_PORT=str(free_port()),
    )
    trailhouse = Trailhouse(tmp_path / "data", env)
    settings = load_settings(environ={k: v for k, v in trailhouse.env.items() if k.startswith("TRAILHOUSE_")})
    trailhouse("sources", "add", "--account", "218007301253", "--region", "us-east-1", "--bucket", f"file://{folder}")

    stages = {
        name: subprocess.Popen(
            [sys.executable, "-m", "trailhouse", name],
            env=trailhouse.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("sink", "worker")
    }
    try:
        polled = trailhouse("poll", "--once")
        records = sum(len(json.loads(f.read_text())["Records"]) for f in real_files[:10])
        assert f"published 10 file(s), {records:,} record(s)" in polled.stdout
        wait_drained(settings, broker, settings.worker_group, settings.topic_raw)
        wait_drained(settings, broker, settings.sink_group, settings.topic_events)
    finally:
        for process in stages.values():
            process.send_signal(signal.SIGTERM)
        outputs = {name: process.communicate(timeout=60)[0] for name, process in stages.items()}
    assert {name: p.returncode for name, p in stages.items()} == {"sink": 0, "worker": 0}, outputs
    assert trailhouse("search", "*", "--count").stdout.strip() == str(records)
    assert trailhouse("poll", "--once").stdout.startswith("published 0 file(s)")
