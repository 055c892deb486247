import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trailhouse import stages
from trailhouse.config import Settings
from trailhouse.processes import map_large_allocations, use_one_malloc_arena

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


# After a 4 MiB block is freed, is a 2 MiB block mapped on its own (mallinfo2's hblks) or taken from the heap?
MAPPED_AFTER_A_LARGE_FREE = """
import ctypes, sys
from trailhouse.processes import map_large_allocations

FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
took = map_large_allocations() if sys.argv[1] == "call" else None
libc.free(libc.malloc(4 << 20))
mapped_before = libc.mallinfo2().hblks
block = libc.malloc(2 << 20)
print(took, libc.mallinfo2().hblks - mapped_before)
libc.free(block)
"""


def mapped_after_a_large_free(call: bool, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")} | env
    out = subprocess.run(
        [sys.executable, "-c", MAPPED_AFTER_A_LARGE_FREE, "call" if call else "no"],
        capture_output=True,
        text=True,
        env=environ,
        check=True,
        timeout=60,
    ).stdout.split()
    return out[0], int(out[1])


def test_without_the_call_glibc_takes_large_blocks_from_the_heap_once_one_was_freed():
    assert mapped_after_a_large_free(call=False) == ("None", 0)


def test_after_the_call_large_blocks_are_mapped_and_given_back_when_freed():
    assert mapped_after_a_large_free(call=True) == ("True", 1)


@pytest.mark.parametrize(
    "env", [{"MALLOC_MMAP_THRESHOLD_": "8388608"}, {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=8388608"}]
)
def test_a_threshold_the_user_set_is_left_alone(env):
    assert mapped_after_a_large_free(call=True, **env) == ("False", 0)


def test_this_process_keeps_the_threshold_the_user_set(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "8388608")
    assert map_large_allocations() is False


def test_the_sink_maps_large_allocations_before_it_starts(monkeypatch):
    calls = []
    monkeypatch.setattr(stages, "map_large_allocations", lambda: calls.append("mapped"))
    monkeypatch.setattr(stages, "serve_stage", lambda *args: calls.append("sink"))
    stages.run_sink(Settings(), "127.0.0.1:9092")
    assert calls == ["mapped", "sink"]
