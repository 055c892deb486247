"""The agent's intake: batches bounded in bytes, gathered while the previous one is handled, and acknowledged only
once handled (streams/intake.py). No Kafka here: the stream is a stand-in with Faust's manual-ack surface."""

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from streams.intake import Intake, IntakeClosed, take_batches


def _sized() -> Intake[int]:
    """An intake of 1,000 bytes, of ints whose size is their value."""
    return Intake(1000, size=lambda item: item)


def test_a_batch_is_the_oldest_items_within_the_bytes_and_a_larger_item_is_a_batch_alone():
    async def run() -> list[list[int]]:
        intake = _sized()
        taken = []
        for item in [400, 300, 300]:
            await intake.put(item)
        taken.append(await intake.take(max_items=10, within=0))
        for item in [1500]:
            await intake.put(item)  # enters the empty intake although it is larger than the bound
        taken.append(await intake.take(max_items=10, within=0))
        for item in [50, 60, 70]:
            await intake.put(item)
        taken.append(await intake.take(max_items=2, within=0))
        taken.append(await intake.take(max_items=2, within=0))
        return taken

    assert asyncio.run(run()) == [[400, 300, 300], [1500], [50, 60], [70]]


def test_a_put_waits_while_the_item_does_not_fit_and_a_waiting_put_ends_the_wait_for_more():
    async def run() -> None:
        intake = _sized()
        await intake.put(600)
        blocked = asyncio.ensure_future(intake.put(500))
        await asyncio.sleep(0)
        assert not blocked.done(), "600 + 500 bytes do not fit in 1,000"
        # the intake is as full as it gets: the take does not wait its 60 s for more
        assert await asyncio.wait_for(intake.take(max_items=10, within=60), timeout=10) == [600]
        await asyncio.wait_for(blocked, timeout=10)
        assert intake.drain() == [500]

    asyncio.run(run())


def test_a_take_waits_for_the_first_item_then_for_more_until_within_or_max_items():
    """Timing-free: `within` ends a batch of what came (whenever that is), and `max_items` ends it at once."""

    async def run() -> tuple[list[int], list[int]]:
        intake = _sized()
        first = asyncio.ensure_future(intake.take(max_items=2, within=60))
        await asyncio.sleep(0)
        assert not first.done(), "nothing in the intake yet"
        await intake.put(10)
        await asyncio.sleep(0)
        assert not first.done(), "one item of two, and 60 s to wait for the other"
        await intake.put(20)
        one = await asyncio.wait_for(first, timeout=10)
        await intake.put(30)
        two = await asyncio.wait_for(intake.take(max_items=10, within=0.01), timeout=10)  # within: what came
        return one, two

    assert asyncio.run(run()) == ([10, 20], [30])


def test_a_closed_intake_gives_what_it_holds_then_the_reason():
    async def run() -> None:
        intake = _sized()
        await intake.put(5)
        waiting = asyncio.ensure_future(intake.take(max_items=10, within=60))
        await asyncio.sleep(0)
        intake.close(IntakeClosed())
        assert await asyncio.wait_for(waiting, timeout=10) == [5]
        with pytest.raises(IntakeClosed):
            await intake.take(max_items=10, within=0)

    asyncio.run(run())


class Stream:
    """Faust's manual-ack surface (`noack`, `events`, `ack`) over a fixed list of messages, recording acks."""

    def __init__(self, sizes: list[int], fail_after: int | None = None, ends: bool = False) -> None:
        self.delivered = [
            SimpleNamespace(message=SimpleNamespace(offset=i, value=b"x" * size, acked=False))
            for i, size in enumerate(sizes)
        ]
        self.fail_after = fail_after
        self.ends = ends  # else it waits after its messages, as a Kafka topic's stream does
        self.acked: list[int] = []
        self.taken = 0  # messages the consumer of the stream took

    def noack(self) -> "Stream":
        return self

    async def events(self) -> AsyncIterator[SimpleNamespace]:
        for i, event in enumerate(self.delivered):
            if i == self.fail_after:
                raise ConnectionError("the channel failed")
            self.taken += 1
            yield event
        if not self.ends:
            await asyncio.Event().wait()

    async def ack(self, event: SimpleNamespace) -> bool:
        event.message.acked = True
        self.acked.append(event.message.offset)
        return True


def _offsets(batch) -> list[int]:
    return [event.message.offset for event in batch]


def test_batches_are_acknowledged_once_handled_and_the_unhandled_ones_are_withheld():
    """A batch is acknowledged when the agent asks for the next one; the batch the agent was handling when it
    stopped, and what waited in the intake, are marked acknowledged on the message alone (withheld: the commit
    stays before them) and never reach the stream's acknowledgements."""

    async def run() -> tuple[Stream, list[list[int]]]:
        stream = Stream([400, 400, 400, 300, 900, 100])
        batches = take_batches(stream, max_bytes=1000, max_messages=10, within=0.05)
        seen = []
        async for batch in batches:
            seen.append(_offsets(batch))
            if len(seen) == 1:
                assert stream.acked == []
            if len(seen) == 2:
                assert stream.acked == [0, 1], "the first batch, once the second was asked for"
                break
        await batches.aclose()
        return stream, seen

    stream, seen = asyncio.run(run())
    assert seen == [[0, 1], [2, 3]]
    assert stream.acked == [0, 1]
    taken = stream.delivered[: stream.taken]
    assert len(taken) > 4, "the intake had gathered more while the second batch was handled"
    assert all(event.message.acked for event in taken), "withheld: the batch handled at the stop, and the rest"


def test_batches_end_with_the_stream_and_a_failing_stream_fails_the_agent():
    async def run(stream: Stream) -> list[list[int]]:
        return [_offsets(b) async for b in take_batches(stream, max_bytes=1000, max_messages=10, within=0.01)]

    ended = Stream([300, 300], ends=True)
    assert asyncio.run(run(ended)) == [[0, 1]]
    assert ended.acked == [0, 1]
    with pytest.raises(ConnectionError, match="the channel failed"):
        asyncio.run(run(Stream([300, 300, 300], fail_after=2, ends=True)))


def test_messages_waiting_in_the_intake_at_a_stop_are_withheld():
    """The feeder had gathered more than the agent took (here: two messages a batch); the agent stops after its
    second batch, and the messages still in the intake are withheld with the batch in hand."""

    async def run() -> Stream:
        stream = Stream([100] * 6)
        batches = take_batches(stream, max_bytes=1000, max_messages=2, within=0.05)
        seen = [_offsets(await anext(batches)), _offsets(await anext(batches))]
        assert seen == [[0, 1], [2, 3]]
        await batches.aclose()
        return stream

    stream = asyncio.run(run())
    assert stream.taken == 6, "all six were in the intake at the stop"
    assert stream.acked == [0, 1]
    assert [event.message.acked for event in stream.delivered] == [True] * 6
