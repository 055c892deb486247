"""An S3 endpoint on loopback (moto's server) for the demo and the tests: real HTTP, real boto3 calls.

It runs in its own process: in the poller's process it would compete with the poller for the GIL (a request
costs it ~3 ms of CPU), which made every download wait on it.
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from trailhouse.errors import ConfigError, TransientError
from trailhouse.processes import die_with_parent, free_port

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
DEMO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "trailhouse-demo",
    "AWS_SECRET_ACCESS_KEY": "trailhouse-demo",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def local_s3() -> Iterator[str]:
    """Run moto's S3 server on a free loopback port; yield its endpoint URL."""
    if importlib.util.find_spec("moto") is None:
        raise ConfigError("the local S3 endpoint needs moto: pip install 'trailhouse[embedded]'")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise TransientError(f"the local S3 endpoint (moto) did not start on port {port}")
            time.sleep(0.05)
        log.debug("local S3 endpoint (moto) at %s", endpoint)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True
