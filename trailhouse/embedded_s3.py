"""An S3 endpoint on loopback (moto's server) for the demo and the tests: real HTTP, real boto3 calls."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

DEMO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "trailhouse-demo",
    "AWS_SECRET_ACCESS_KEY": "trailhouse-demo",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def local_s3() -> Iterator[str]:
    """Run moto's S3 server on a free loopback port; yield its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    log.info("local S3 endpoint (moto) at %s", endpoint)
    try:
        yield endpoint
    finally:
        server.stop()
