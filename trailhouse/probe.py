"""`python -m trailhouse.probe`: the container image's HEALTHCHECK (the slim image has no curl).

Exits 0 when the stage running in this container answers `GET /healthz` with 200 on 127.0.0.1: on the port the
settings give (`TRAILHOUSE_HTTP_PORT`), or, when unset, on whichever stage's default port answers (9401 poll,
9402 worker, 9403 sink). With `http_port=0` there is nothing to probe and it exits 0. One-shot commands
(generate, sources add, search) serve nothing, and finish before the first check (start period) counts.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from trailhouse.config import load_settings
from trailhouse.health import DEFAULT_PORTS


def probe(port: int, timeout: float = 4.0) -> int | None:
    """The HTTP status of /healthz on `port`, or None when nothing listens there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def main() -> int:
    settings = load_settings()
    if settings.http_port == 0:
        return 0
    ports = [settings.http_port] if settings.http_port is not None else list(DEFAULT_PORTS.values())
    answers = {port: probe(port) for port in ports}
    if any(status == 200 for status in answers.values()):
        return 0
    print(f"unhealthy: /healthz answered {answers}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
