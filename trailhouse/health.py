"""Health of a stage, and the small HTTP server every stage runs: `/healthz`, `/readyz`, `/metrics`.

- `/healthz` (liveness): 200 while the stage's loop shows signs of life (a heartbeat within `stall_after_s`; a
  stage still starting is given `startup_grace_s`), 503 once it stalls, fails or stops. A restart can help.
- `/readyz` (readiness): 200 once the stage does its job: the poller has read the source registry, the worker
  and the sink hold a place in their consumer group. 503 while starting, rebalancing or stopping.
- `/metrics`: Prometheus text format of the process's default registry (trailhouse/metrics.py names them).

Both health answers are JSON (`{"stage": "sink", "live": true, "ready": true, "detail": "..."}`), so a person
with curl sees why. The server is a stdlib `ThreadingHTTPServer` in a daemon thread, the same in every stage,
so probes and scrapes do not depend on a stage's event loop or consumer loop being free; the stage proves it
is alive by calling `beat()` from its own loop.

Ports: one per process. `port_of(settings, stage)` gives a single stage's port; `run_ports(settings)` the
layout of `trailhouse run`, whose poller (in the parent), worker and sink (children) take three ports.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from trailhouse.config import Settings
from trailhouse.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"poll": 9401, "worker": 9402, "sink": 9403}
STARTUP_GRACE_S = 600.0


def port_of(settings: Settings, stage: str) -> int:
    """The port of one stage's server (0 = none)."""
    return DEFAULT_PORTS[stage] if settings.http_port is None else settings.http_port


def run_ports(settings: Settings) -> dict[str, int]:
    """Ports of `trailhouse run`'s poller, worker and sink: the defaults, or `http_port` and the next two."""
    if settings.http_port is None:
        return dict(DEFAULT_PORTS)
    if settings.http_port == 0:
        return dict.fromkeys(DEFAULT_PORTS, 0)
    return {stage: settings.http_port + offset for offset, stage in enumerate(DEFAULT_PORTS)}


@dataclass
class Health:
    """What a stage reports about itself; updated from the stage's threads, read by the HTTP server."""

    stage: str
    stall_after_s: float
    startup_grace_s: float = STARTUP_GRACE_S
    clock: Callable[[], float] = time.monotonic
    _started: float = field(init=False)
    _last_beat: float | None = field(default=None, init=False)
    _ready: bool = field(default=False, init=False)
    _stopping: bool = field(default=False, init=False)
    _failure: str | None = field(default=None, init=False)
    _detail: str = field(default="starting", init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._started = self.clock()

    def beat(self) -> None:
        """The stage's loop went round: it is alive."""
        self._last_beat = self.clock()

    def set_ready(self, ready: bool, detail: str) -> None:
        with self._lock:
            self._ready, self._detail = ready, detail
        self.beat()

    def stopping(self) -> None:
        with self._lock:
            self._stopping, self._ready, self._detail = True, False, "stopping: finishing the work in flight"

    def failed(self, reason: str) -> None:
        with self._lock:
            self._failure, self._ready = reason, False

    def report(self) -> dict[str, object]:
        """{stage, live, ready, detail}: the body of /healthz and /readyz."""
        now = self.clock()
        with self._lock:
            ready, detail, failure, stopping = self._ready, self._detail, self._failure, self._stopping
        if failure is not None:
            live, detail = False, f"failed: {failure}"
        elif stopping:
            live = True  # a stopping stage is finishing its batch: killing it would only lose that work
        elif self._last_beat is None:
            live = now - self._started < self.startup_grace_s
            if not live:
                detail = f"did not start within {self.startup_grace_s:.0f}s"
        else:
            silent = now - self._last_beat
            live = silent < self.stall_after_s
            if not live:
                detail = f"stalled: no progress for {silent:.0f}s (limit {self.stall_after_s:.0f}s)"
        return {"stage": self.stage, "live": live, "ready": live and ready, "detail": detail}


class _Handler(BaseHTTPRequestHandler):
    health: Health  # set on the subclass made per server

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
        elif path in ("/healthz", "/readyz"):
            report = self.health.report()
            ok = report["live"] if path == "/healthz" else report["ready"]
            self._send(200 if ok else 503, "application/json", json.dumps(report).encode() + b"\n")
        else:
            self._send(404, "text/plain", b"not found: try /healthz, /readyz or /metrics\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # probes every few seconds would flood the log
        log.debug("%s " + format, self.address_string(), *args)


class HealthServer:
    """The /healthz, /readyz and /metrics server of one process; `close()` stops it."""

    def __init__(self, health: Health, bind: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"health": health})
        try:
            self._server = ThreadingHTTPServer((bind, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"the {health.stage} stage cannot serve /healthz and /metrics on {bind}:{port} ({exc.strerror}): "
                "another process uses the port; set --http-port to a free one, or 0 for no server"
            ) from exc
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-server", daemon=True)
        self._thread.start()
        log.info("%s stage: /healthz, /readyz and /metrics on http://%s:%d", health.stage, bind, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve(health: Health, settings: Settings) -> HealthServer | None:
    """Start the server of `health.stage` on its configured port; None when the port is 0."""
    port = port_of(settings, health.stage)
    return HealthServer(health, settings.http_bind, port) if port else None
