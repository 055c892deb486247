"""The bench's own measurements: a child's peak RSS is the child's, not its parent's; a median RSS is the level a
process works at, not its peak; processes sampled together give the highest sum they held at one moment."""

import os
import time
from pathlib import Path

import pytest

from trailhouse.bench_probes import Child, RssSampler, highest, in_child, own_peak_rss_mb
from trailhouse.errors import TrailhouseError
from trailhouse.processes import rss_mb

BALLAST_MB = 200


def _touched(megabytes: int) -> bytearray:
    ballast = bytearray(megabytes * 1024 * 1024)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))  # touch every page: resident in this process
    return ballast


def test_a_spawned_child_reports_its_own_peak_rss_not_its_parents():
    ballast = _touched(BALLAST_MB)
    assert own_peak_rss_mb() > BALLAST_MB

    assert in_child(own_peak_rss_mb) < BALLAST_MB  # ru_maxrss would report the parent's size at the fork
    assert ballast[0] == 1  # held, and resident in the parent, until after the fork


def test_a_peak_is_the_highest_reading_even_where_the_later_one_came_out_lower():
    # The kernel reads VmHWM approximately: CI once saw the end of a run read under its half (2026-12-07).
    assert highest(512.3, 512.9) == 512.9
    assert highest(None, 512.9) == 512.9
    assert highest(None, None) is None


def _until_samples(sampler: RssSampler, count: int) -> None:
    deadline = time.monotonic() + 30
    while sampler.round_count < count:
        if time.monotonic() > deadline:
            pytest.fail(f"the sampler took {sampler.round_count} of {count} samples in 30 s")
        time.sleep(0.005)


def test_the_median_rss_is_the_level_a_process_works_at_not_a_moment_of_it():
    level_before = rss_mb(os.getpid())
    with RssSampler({"bench": os.getpid()}, every_s=0.005) as sampler:
        _until_samples(sampler, 20)
        spike = _touched(BALLAST_MB)
        _until_samples(sampler, sampler.round_count + 5)  # samples that see the spike
        in_spike = sampler.round_count
        del spike  # a block this large is its own mapping: freeing it gives it back to the OS
        _until_samples(sampler, 2 * in_spike + 1)  # fewer than half of the samples can have seen the spike
    assert own_peak_rss_mb() > level_before + BALLAST_MB * 0.9  # the peak holds the spike
    assert abs(sampler.median_mb("bench") - level_before) < BALLAST_MB / 4


def test_processes_that_hold_memory_at_the_same_moment_add_up():
    # This process sampled under two names: each round holds it twice, so the total is a sum of one round, not
    # the largest process of it (the two-children test below only bounds the total from above).
    held = _touched(BALLAST_MB)
    with RssSampler({"one": os.getpid(), "two": os.getpid()}, every_s=0.005) as sampler:
        _until_samples(sampler, 3)
    assert sampler.highest_total_mb > 2 * BALLAST_MB, sampler.highest_total_mb
    assert held[0] == 1  # resident until the samples were taken


def test_a_process_that_cannot_be_sampled_has_no_median_and_leaves_no_sum():
    with RssSampler({"gone": None, "bench": os.getpid()}, every_s=0.005) as sampler:
        _until_samples(sampler, 3)
    assert sampler.median_mb("gone") is None and sampler.median_mb("bench") > 0
    assert sampler.highest_total_mb is None  # a sum without one of them would look smaller than it was


def _hold_then_free(megabytes: int, go: str, holding: str, freed: str) -> None:
    """Once the file `go` exists, hold `megabytes` and say so in the file `holding`; free them once `freed` exists."""
    _wait_for(Path(go))
    ballast = _touched(megabytes)
    Path(holding).touch()
    _wait_for(Path(freed))
    del ballast


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} did not appear within 60 s")
        time.sleep(0.005)


def test_processes_sampled_together_give_the_highest_sum_of_one_moment_not_the_sum_of_their_peaks(tmp_path):
    # Two children hold BALLAST_MB one after the other: their peaks add up to two ballasts, but at no moment did
    # they hold more than one together. The first has exited when the second holds its own: it counts as nothing.
    files = {name: tmp_path / name for name in ("go", "first-holds", "first-freed", "second-holds", "second-freed")}
    files["go"].touch()
    first = Child(_hold_then_free, BALLAST_MB, *(str(files[n]) for n in ("go", "first-holds", "first-freed")))
    second = Child(
        _hold_then_free, BALLAST_MB, *(str(files[n]) for n in ("first-freed", "second-holds", "second-freed"))
    )
    with RssSampler({"first": first.pid, "second": second.pid}, every_s=0.005) as sampler:
        for child, holds, freed in ((first, "first-holds", "first-freed"), (second, "second-holds", "second-freed")):
            _wait_for(files[holds])
            _until_samples(sampler, sampler.round_count + 5)  # rounds that see this ballast
            files[freed].touch()
            assert child.result(60) is None
    together = sampler.highest_total_mb
    assert BALLAST_MB < together < 1.5 * BALLAST_MB, together


def _fails() -> None:
    raise TrailhouseError("the stage failed: access denied")


def _exits() -> None:
    os._exit(3)


def test_a_child_hands_its_error_to_the_bench_or_says_that_it_died():
    with pytest.raises(TrailhouseError, match="access denied"):
        in_child(_fails)
    with pytest.raises(TrailhouseError, match="_exits exited with status 3 before it returned"):
        in_child(_exits)


def test_waiting_for_a_group_reports_the_part_of_the_input_it_has_committed(settings, broker):
    """What the bench samples a stage's memory at half of its input by: the committed part of `ends`, per poll."""
    from confluent_kafka import Consumer, TopicPartition

    from trailhouse.bench_probes import wait_committed
    from trailhouse.kafka import client_options, ensure_topics

    ensure_topics(settings, broker)
    topic, group = settings.topic_raw, settings.worker_group
    committer = Consumer(client_options(settings, broker) | {"group.id": group, "enable.auto.commit": False})

    def commit(offsets: dict[int, int]) -> None:
        committer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)

    seen: list[float] = []

    def progress(done: float) -> None:
        seen.append(done)
        commit({0: 10, 1: 30})  # the rest: the next poll finds everything committed

    try:
        commit({0: 10, 1: 10})
        wait_committed(settings, broker, group, topic, {0: 10, 1: 30}, timeout_s=30, progress=progress)
    finally:
        committer.close()
    assert seen == [0.5]
