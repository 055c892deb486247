"""Logging set-up, once per process: one line per event, with the stage name when several stages share a terminal."""

from __future__ import annotations

import logging
import sys

_QUIET_LIBRARIES = ("aiokafka", "faust", "mode", "botocore", "urllib3", "werkzeug", "kafka")


def setup_logging(level: str, *, stage: str = "") -> None:
    prefix = f"[{stage}] " if stage else ""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)-7s {prefix}%(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries log their internals at INFO; keep them to warnings unless debugging.
    if level.upper() != "DEBUG":
        for name in _QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)
