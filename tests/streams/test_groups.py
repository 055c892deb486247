"""How the worker splits a batch of messages into groups it handles and sends at a time."""

from types import SimpleNamespace

from streams.app import in_groups


def _message(size: int, offset: int) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(value=b"x" * size, offset=offset))


def test_groups_keep_the_order_and_stay_within_the_bytes_a_larger_message_alone():
    messages = [_message(size, i) for i, size in enumerate([400, 300, 300, 50, 1500, 100, 0])]
    groups = [[m.message.offset for m in g] for g in in_groups(messages, 1000)]
    assert groups == [[0, 1, 2], [3], [4], [5, 6]]
    assert list(in_groups([], 1000)) == []
