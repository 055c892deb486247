"""The bench's own measurements: a child's peak RSS is the child's, not its parent's."""

from trailhouse.bench_probes import in_child, own_peak_rss_mb

BALLAST_MB = 200


def test_a_spawned_child_reports_its_own_peak_rss_not_its_parents():
    ballast = bytearray(BALLAST_MB * 1024 * 1024)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))  # touch every page: resident in this process
    assert own_peak_rss_mb() > BALLAST_MB

    assert in_child(own_peak_rss_mb) < BALLAST_MB  # ru_maxrss would report the parent's size at the fork


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
