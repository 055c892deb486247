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


def run_script(script: str, *args: str, env: dict[str, str]) -> tuple[str, int]:
    """Run `script` in a fresh Python whose environment has none of glibc's malloc settings but `env`; it prints
    whether the call under test took and a count."""
    malloc_settings = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
    environ = {k: v for k, v in os.environ.items() if k not in malloc_settings} | env
    out = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=environ, check=True, timeout=60
    ).stdout.split()
    return out[0], int(out[1])


def heaps_after_threads(tmp_path: Path, call: bool, **env: str) -> tuple[str, int]:
    return run_script(HEAPS_AFTER_THREADS, "call" if call else "no", str(tmp_path / "malloc-info.xml"), env=env)


def test_without_the_call_each_thread_allocates_in_an_arena_of_its_own(tmp_path):
    assert heaps_after_threads(tmp_path, call=False) == ("None", 5)


def test_after_the_call_every_thread_allocates_from_the_main_heap(tmp_path):
    assert heaps_after_threads(tmp_path, call=True) == ("True", 1)


def test_other_glibc_tunables_do_not_stop_it(tmp_path):
    assert heaps_after_threads(tmp_path, call=True, GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072") == ("True", 1)


@pytest.mark.parametrize("env", [{"MALLOC_ARENA_MAX": "2"}, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}])
def test_a_limit_the_user_set_is_left_alone(tmp_path, env):
    assert heaps_after_threads(tmp_path, call=True, **env) == ("False", 2)


@pytest.mark.parametrize(
    ("call", "variable"),
    [(use_one_malloc_arena, "MALLOC_ARENA_MAX"), (map_large_allocations, "MALLOC_MMAP_THRESHOLD_")],
)
def test_this_process_keeps_what_the_user_set(monkeypatch, call, variable):
    monkeypatch.setenv(variable, "2")
    assert call() is False


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
    return run_script(MAPPED_AFTER_A_LARGE_FREE, "call" if call else "no", env=env)


def test_without_the_call_glibc_takes_large_blocks_from_the_heap_once_one_was_freed():
    assert mapped_after_a_large_free(call=False) == ("None", 0)


def test_after_the_call_large_blocks_are_mapped_and_given_back_when_freed():
    assert mapped_after_a_large_free(call=True) == ("True", 1)


@pytest.mark.parametrize(
    "env", [{"MALLOC_MMAP_THRESHOLD_": "8388608"}, {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=8388608"}]
)
def test_a_threshold_the_user_set_is_left_alone(env):
    assert mapped_after_a_large_free(call=True, **env) == ("False", 0)


def test_the_sink_maps_large_allocations_before_it_starts(monkeypatch):
    calls = []
    monkeypatch.setattr(stages, "map_large_allocations", lambda: calls.append("mapped"))
    monkeypatch.setattr(stages, "serve_stage", lambda *args: calls.append("sink"))
    stages.run_sink(Settings(), "127.0.0.1:9092")
    assert calls == ["mapped", "sink"]
