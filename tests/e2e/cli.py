"""Run the `trailhouse` command line as a user would: a separate process, settings from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


class Trailhouse:
    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env, "TRAILHOUSE_DATA_DIR": str(data_dir)}

    def __call__(self, *args: str, ok: bool = True, timeout: float = 150) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(
                [sys.executable, "-m", "trailhouse", *args],
                env=self.env,
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
