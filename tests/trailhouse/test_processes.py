import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trailhouse import stages
from trailhouse.config import Settings
from trailhouse.processes import use_one_malloc_arena

pytestmark = pytest.mark.skipif(
    not all(hasattr(ctypes.CDLL(None), name) for name in ("mallopt", "malloc_info")), reason="needs glibc's malloc"
)

# Four threads allocate while all are alive; glibc's malloc_info lists one <heap> per arena in use.
HEAPS_AFTER_THREADS = """
import ctypes, sys, threading
from trailhouse.processes import use_one_malloc_arena

took = use_one_malloc_arena() if sys.argv[1] == "call" else None
together = threading.Barrier(4)
kept = []

def allocate():
    together.wait()
    kept.append([bytes(100_000) for _ in range(10)])
    together.wait()

threads = [threading.Thread(target=allocate) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
stream = ctypes.c_void_p(libc.fopen(sys.argv[2].encode(), b"w"))
libc.malloc_info(0, stream)
libc.fclose(stream)
print(took, open(sys.argv[2]).read().count("<heap nr="))
"""


def heaps_after_threads(tmp_path: Path, call: bool, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")} | env
    out = subprocess.run(
        [sys.executable, "-c", HEAPS_AFTER_THREADS, "call" if call else "no", str(tmp_path / "malloc-info.xml")],
        capture_output=True,
        text=True,
        env=environ,
        check=True,
        timeout=60,
    ).stdout.split()
    return out[0], int(out[1])


def test_without_the_call_each_thread_allocates_in_an_arena_of_its_own(tmp_path):
    assert heaps_after_threads(tmp_path, call=False) == ("None", 5)


def test_after_the_call_every_thread_allocates_from_the_main_heap(tmp_path):
    assert heaps_after_threads(tmp_path, call=True) == ("True", 1)


def test_other_glibc_tunables_do_not_stop_it(tmp_path):
    assert heaps_after_threads(tmp_path, call=True, GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072") == ("True", 1)


@pytest.mark.parametrize("env", [{"MALLOC_ARENA_MAX": "2"}, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}])
def test_a_limit_the_user_set_is_left_alone(tmp_path, env):
    assert heaps_after_threads(tmp_path, call=True, **env) == ("False", 2)


def test_this_process_is_left_alone_when_the_user_set_a_limit(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert use_one_malloc_arena() is False


def test_the_worker_takes_one_arena_before_its_kafka_clients_start_threads(monkeypatch):
    calls = []
    monkeypatch.setattr(stages, "use_one_malloc_arena", lambda: calls.append("one arena"))
    monkeypatch.setattr("trailhouse.kafka.ensure_topics", lambda *args: calls.append("kafka clients"))
    monkeypatch.setattr("streams.app.run_worker", lambda *args, **kwargs: calls.append("faust"))
    stages.run_worker(Settings(), "127.0.0.1:9092")
    assert calls == ["one arena", "kafka clients", "faust"]
