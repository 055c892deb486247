from streams.stall import StallGuard

RAW0, RAW1 = ("raw", 0), ("raw", 1)


def test_a_partition_not_committed_to_its_end_while_idle_after_a_rebalance_triggers_a_seek():
    guard = StallGuard(idle_s=3, watch_s=60, max_seeks=2)
    guard.rebalanced(now=100)
    guard.delivered(now=101)
    guard.done(now=101)
    assert not guard.lagging({RAW0: 5, RAW1: 0}, {RAW0: 5}, now=105), "everything committed"
    assert not guard.lagging({RAW0: 7}, {RAW0: 5}, now=102), "not idle long enough"
    assert guard.lagging({RAW0: 7, RAW1: 4}, {RAW0: 5, RAW1: 4}, now=105) == {RAW0: 5}, "only the one behind"
    assert not guard.lagging({RAW0: 7}, {RAW0: 5}, now=106), "the seek gets time to deliver"
    assert guard.lagging({RAW0: 7}, {RAW0: 5}, now=109) == {RAW0: 5}
    assert not guard.lagging({RAW0: 7}, {RAW0: 5}, now=113), "at most max_seeks per rebalance"


def test_the_guard_sleeps_outside_the_window_after_a_rebalance():
    guard = StallGuard(idle_s=3, watch_s=60)
    assert not guard.lagging({RAW0: 3}, {}, now=10), "no rebalance yet"
    guard.rebalanced(now=100)
    assert not guard.lagging({RAW0: 3}, {}, now=161)
    guard.rebalanced(now=200)
    assert guard.lagging({RAW0: 3}, {}, now=204) == {RAW0: 0}, "never committed: read again from offset 0"


def test_an_agent_working_on_a_message_is_not_stalled_however_long_it_takes():
    guard = StallGuard(idle_s=3)
    guard.rebalanced(now=0)
    guard.delivered(now=1)
    assert not guard.lagging({RAW0: 9}, {}, now=30), "waiting for its deliveries under backpressure"
    assert guard.busy_for(now=30) == 29
    guard.done(now=31)
    assert guard.busy_for(now=32) == 0
    assert not guard.lagging({RAW0: 9}, {}, now=32)
    assert guard.lagging({RAW0: 9}, {}, now=35)
