"""`trailhouse run` without --once, on the embedded stack: a run that fills its in-memory broker restarts it."""

import gzip
import json
import time
from pathlib import Path

import pytest

from tests.e2e.cli import StageProcess, Trailhouse
from trailhouse.processes import free_port

pytestmark = pytest.mark.e2e

TRAIL = "AWSLogs/218007301253/CloudTrail/us-east-1/2023/07/10"


def lay_out(files: list[Path], folder: Path) -> None:
    (folder / TRAIL).mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / TRAIL / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes(), mtime=0))


def wait_for(what: str, condition, run: StageProcess, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if run.process.poll() is not None:
            raise AssertionError(f"trailhouse run exited {run.process.returncode} before {what}:\n{run.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f}s:\n{run.output()[-5000:]}")
        time.sleep(0.5)


def test_a_run_whose_embedded_broker_is_full_restarts_it_and_every_event_is_stored_once(tmp_path, real_files):
    trail = tmp_path / "trail"
    lay_out(real_files[:30], trail)
    trailhouse = Trailhouse(
        tmp_path / "data",
        {
            "TRAILHOUSE_EMBEDDED_BROKER_MAX_MB": "1",  # below any broker: a restart after each save
            "TRAILHOUSE_POLL_INTERVAL": "1",
            "TRAILHOUSE_SINK_BATCH_SECONDS": "0.2",
            "TRAILHOUSE_WORKER_REBALANCE_TIMEOUT": "4",  # Tansu holds a join for half of it (see NOTES.md)
        },
    )
    trailhouse("sources", "add", "--account", "218007301253", "--region", "us-east-1", "--bucket", f"file://{trail}")
    expected = {r["eventID"] for f in real_files for r in json.loads(f.read_text())["Records"]}

    run = StageProcess("run", trailhouse.env, free_port(), tmp_path)
    try:
        wait_for("restart of the broker", lambda: run.metric("trailhouse_embedded_broker_restarts_total") >= 1, run)
        assert run.metric("trailhouse_embedded_broker_resident_bytes") > 1024 * 1024
        lay_out(real_files[30:], trail)  # the stages are new, on a new broker: only the registry and the rest kept
        wait_for(
            "poll of the files added after the restart",
            lambda: run.metric("trailhouse_poll_files_total") >= len(real_files),
            run,
        )
    finally:
        code = run.stop()
    output = run.output()
    assert code == 0, output  # drained at the stop: the second half is stored too
    assert "restarting it to give the memory back" in output

    lines = trailhouse("search", "*", "--format", "json", "--limit", "10000").stdout.splitlines()
    stored = [json.loads(line)["event_id"] for line in lines]
    assert len(stored) == len(expected) == 2900
    assert set(stored) == expected, "every event of both halves, once"
    sources = trailhouse("sources", "list").stdout
    assert "cloudtrail-218007301253-us-east-1" in sources, "the registry outlives the broker"
    assert "0 new file(s), 0 record(s)" in trailhouse("run", "--once").stdout, "the checkpoints too"
