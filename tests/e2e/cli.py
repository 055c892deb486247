"""Run the `trailhouse` command line as a user would: a separate process, settings from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def stage_env(broker: str, unique: str, **more: str) -> dict[str, str]:
    """Environment for stage processes of one test: its own topics and groups on the session broker."""
    topics = ("raw", "events", "dlq", "registry", "checkpoints", "sources", "insights", "alerts")
    return {
        "TRAILHOUSE_KAFKA_BOOTSTRAP": broker,
        **{f"TRAILHOUSE_TOPIC_{topic.upper()}": f"{topic}-{unique}" for topic in topics},
        "TRAILHOUSE_WORKER_GROUP": f"worker-{unique}",
        "TRAILHOUSE_SINK_GROUP": f"sink-{unique}",
        "TRAILHOUSE_WORKER_REBALANCE_TIMEOUT": "4",  # Tansu holds a join for half of it (see NOTES.md)
        "TRAILHOUSE_SINK_BATCH_SECONDS": "0.2",
        **more,
    }


class Trailhouse:
    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env, "TRAILHOUSE_DATA_DIR": str(data_dir)}

    def __call__(
        self, *args: str, ok: bool = True, timeout: float = 150, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(
                [sys.executable, "-m", "trailhouse", *args],
                env=self.env,
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"trailhouse {' '.join(args)} did not finish within {timeout:.0f}s\n--- stderr\n{exc.stderr}"
            ) from exc
        if ok and result.returncode != 0:
            raise AssertionError(
                f"trailhouse {' '.join(args)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result


def record_text(json_line: str) -> str:
    """The original record embedded at the end of a `search --format json` line, as raw text."""
    return json_line[json_line.index(',"record":') + len(',"record":') : -1]


class StageProcess:
    """`trailhouse <stage>` in the background, its output in a log file, its /healthz and /metrics on `port`."""

    def __init__(self, stage: str, env: dict[str, str], port: int, log_dir: Path, name: str | None = None) -> None:
        self.stage = stage
        self.name = name or stage
        self.port = port
        self.log = log_dir / f"{self.name}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "trailhouse", stage],
                env={**env, "TRAILHOUSE_HTTP_PORT": str(port)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str) -> tuple[int, str]:
        """(status, body) of a GET on the stage's server; (0, reason) while it does not answer."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include `labels` (0 when absent or unreachable)."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = self.get("/metrics")
        if status != 200:
            return 0.0
        return sum(
            sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM, and the exit code once the stage finished its work in flight."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout)


def until(condition: Callable[[], bool], what: str, timeout: float, processes: list[StageProcess]) -> None:
    """Poll `condition` until true; fail with the stages' logs after `timeout` or when a stage dies."""
    deadline = time.monotonic() + timeout
    while not condition():
        dead = [p for p in processes if p.process.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name} (exit {p.process.poll()})\n{p.output()[-3000:]}" for p in processes)
            pytest.fail(f"{'a stage died' if dead else f'no {what} within {timeout:.0f}s'}\n{logs}")
        time.sleep(0.3)
