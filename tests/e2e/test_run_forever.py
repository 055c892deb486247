"""`trailhouse run` without --once, on the embedded stack: a run that fills its in-memory broker restarts it."""

import json
from pathlib import Path

import pytest

from tests.conftest import lay_out_real_files
from tests.e2e.cli import StageProcess, Trailhouse, until
from trailhouse.generate import folder_writer
from trailhouse.processes import free_port

pytestmark = pytest.mark.e2e


def broker_pid(data_dir: Path, owner: int) -> int | None:
    """The pid of the embedded broker that process `owner` runs, once it has written where it listens."""
    try:
        info = json.loads((data_dir / "kafka" / "broker.json").read_text())
    except (OSError, ValueError):
        return None
    return info["broker_pid"] if info["pid"] == owner else None


def test_a_run_whose_embedded_broker_is_full_restarts_it_and_every_event_is_stored_once(tmp_path, real_files):
    trail, data_dir = tmp_path / "trail", tmp_path / "data"
    lay_out_real_files(real_files[:30], folder_writer(trail))
    trailhouse = Trailhouse(
        data_dir,
        {
            "TRAILHOUSE_EMBEDDED_BROKER_MAX_MB": "1",  # below any broker: a restart after each save
            "TRAILHOUSE_POLL_INTERVAL": "1",
            "TRAILHOUSE_SINK_BATCH_SECONDS": "0.2",
        },
    )
    trailhouse("sources", "add", "--account", "218007301253", "--region", "us-east-1", "--bucket", f"file://{trail}")
    expected = {r["eventID"] for f in real_files for r in json.loads(f.read_text())["Records"]}

    run = StageProcess("run", trailhouse.env, free_port(), tmp_path)
    try:
        until(lambda: broker_pid(data_dir, run.process.pid) is not None, "embedded broker", 60, [run])
        first = broker_pid(data_dir, run.process.pid)
        until(lambda: run.metric("trailhouse_embedded_broker_restarts_total") >= 1, "restart", 180, [run])
        assert run.metric("trailhouse_embedded_broker_resident_bytes") > 1024 * 1024
        second = broker_pid(data_dir, run.process.pid)
        assert second is not None and second != first, "a new broker process, not the stages alone restarted"
        assert not Path(f"/proc/{first}").exists(), "the old broker, and the memory it held, are gone"
        lay_out_real_files(real_files[30:], folder_writer(trail))  # polled by the stages on the new broker
        until(lambda: run.metric("trailhouse_poll_files_total") >= len(real_files), "poll of the rest", 180, [run])
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
