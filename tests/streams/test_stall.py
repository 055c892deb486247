from streams.stall import StallGuard

RAW0, RAW1 = ("raw", 0), ("raw", 1)


def test_messages_beyond_the_last_delivered_while_idle_after_a_rebalance_trigger_a_seek():
    guard = StallGuard(idle_s=3, watch_s=60, max_seeks=2)
    guard.rebalanced(now=100)
    guard.delivered(RAW0, 4, now=101)
    guard.done(now=101)
    assert not guard.should_seek({RAW0: 5, RAW1: 0}, {}, now=102), "everything delivered"
    assert not guard.should_seek({RAW0: 7}, {}, now=102), "not idle long enough"
    assert guard.should_seek({RAW0: 7}, {}, now=105)
    assert not guard.should_seek({RAW0: 7}, {}, now=106), "the seek gets time to deliver"
    assert guard.should_seek({RAW0: 7}, {}, now=109)
    assert not guard.should_seek({RAW0: 7}, {}, now=113), "at most max_seeks per rebalance"


def test_the_guard_sleeps_outside_the_window_after_a_rebalance():
    guard = StallGuard(idle_s=3, watch_s=60)
    assert not guard.should_seek({RAW0: 3}, {}, now=10), "no rebalance yet"
    guard.rebalanced(now=100)
    assert not guard.should_seek({RAW0: 3}, {}, now=161)
    guard.rebalanced(now=200)
    assert guard.should_seek({RAW0: 3}, {}, now=204), "a partition never delivered from"


def test_partitions_committed_to_their_end_are_not_stalled():
    guard = StallGuard(idle_s=3)
    guard.rebalanced(now=0)
    assert not guard.should_seek({RAW0: 5}, {RAW0: 5}, now=10), "a previous owner processed everything"
    assert guard.should_seek({RAW0: 6}, {RAW0: 5}, now=10)


def test_an_agent_working_on_a_message_is_not_stalled_however_long_it_takes():
    guard = StallGuard(idle_s=3)
    guard.rebalanced(now=0)
    guard.delivered(RAW0, 4, now=1)
    assert not guard.should_seek({RAW0: 9}, {}, now=30), "waiting for its deliveries under backpressure"
    guard.done(now=31)
    assert not guard.should_seek({RAW0: 9}, {}, now=32)
    assert guard.should_seek({RAW0: 9}, {}, now=35)
