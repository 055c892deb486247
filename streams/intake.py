"""The agent's input in batches bounded in bytes, the next batch gathered while the agent handles this one.

Faust's `take_events` and the buffers before it count messages, and a raw message is a log file's chunk: a few kB
for a quiet source, up to `raw_chunk_bytes` for a busy one. Counted in messages, what the worker held grew with the
size of the log files (bench, 37 messages a batch: ~10 MB of chunks in flight at 100k events, ~40 MB at 400k,
whose files are ~4x larger). Here one task moves the stream's messages into an `Intake` that holds at most
`max_bytes` of them, and the agent takes everything there (at most `max_bytes`) as its next batch; Faust's own
buffers before it are kept to a few messages (streams/app.py).

`take_batches` keeps `take_events`' contract: a batch's messages are acknowledged when the agent asks for the next
batch, after it handled them. Unlike `take_events`, it does not acknowledge a batch the agent did not finish (its
loop raised or was cancelled), nor the messages still waiting in the intake: they are withheld, so that the
commit stays before them and the next owner of their partitions reads them again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from time import monotonic
from typing import Generic, TypeVar

import faust

T = TypeVar("T")


class IntakeClosed(Exception):
    """The task that put into the intake ended: nothing more will come."""


class Intake(Generic[T]):
    """A FIFO bounded in bytes between one task that puts and one that takes batches (one event loop).

    An item larger than `max_bytes` enters an empty intake and is a batch alone: a large message is never stuck.
    """

    def __init__(self, max_bytes: int, size: Callable[[T], int]) -> None:
        self._max_bytes = max_bytes
        self._size = size
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._waiting_puts = 0  # a put waits for room: the intake is as full as it gets, take it now
        self._arrived = asyncio.Event()  # something was put, a put waits, or the intake was closed
        self._room = asyncio.Event()  # something was taken
        self._closed: BaseException | None = None

    async def put(self, item: T) -> None:
        """Add `item`, waiting while it does not fit beside what the intake holds."""
        size = self._size(item)
        while self._items and self._bytes + size > self._max_bytes:
            self._waiting_puts += 1
            self._room.clear()
            self._arrived.set()
            try:
                await self._room.wait()
            finally:
                self._waiting_puts -= 1
        self._items.append((item, size))
        self._bytes += size
        self._arrived.set()

    async def take(self, max_items: int, within: float) -> list[T]:
        """The oldest items, at most `max_items` and `max_bytes` of them (at least one): once the first arrived,
        waits up to `within` seconds for the intake to fill. Raises what `close` was given once the intake is empty.
        """
        while not self._items:
            if self._closed is not None:
                raise self._closed
            self._arrived.clear()
            await self._arrived.wait()
        deadline = monotonic() + within
        while not (self._waiting_puts or len(self._items) >= max_items or self._closed is not None):
            self._arrived.clear()
            try:
                async with asyncio.timeout(deadline - monotonic()):
                    await self._arrived.wait()
            except TimeoutError:
                break
        return self._pop(max_items)

    def close(self, reason: BaseException) -> None:
        """No more puts: `take` returns what is left, then raises `reason` (`IntakeClosed`: the input ended)."""
        self._closed = reason
        self._arrived.set()

    def drain(self) -> list[T]:
        """Everything the intake holds, taken out."""
        return self._pop(len(self._items))

    def _pop(self, max_items: int) -> list[T]:
        taken: list[T] = []
        taken_bytes = 0
        while self._items and len(taken) < max_items:
            item, size = self._items[0]
            if taken and taken_bytes + size > self._max_bytes:
                break
            self._items.popleft()
            taken.append(item)
            taken_bytes += size
        self._bytes -= taken_bytes
        self._room.set()
        return taken


async def take_batches(
    stream: faust.StreamT, *, max_bytes: int, max_messages: int, within: float
) -> AsyncIterator[Sequence[faust.types.EventT]]:
    """Batches of the stream's events, each at most `max_bytes` of message values and `max_messages` messages,
    or what arrived within `within` seconds of the first; acknowledged as the module docstring says."""
    manual = stream.noack()
    intake: Intake[faust.types.EventT] = Intake(max_bytes, _value_bytes)
    feeder = asyncio.ensure_future(_feed(manual.events(), intake))
    batch: list[faust.types.EventT] = []
    try:
        while True:
            try:
                batch = await intake.take(max_messages, within)
            except IntakeClosed:
                return
            yield batch
            for event in batch:
                await manual.ack(event)
            batch = []
    finally:
        feeder.cancel()
        withhold_acks(batch + intake.drain())
        await asyncio.gather(feeder, return_exceptions=True)


async def _feed(events: AsyncIterable[faust.types.EventT], intake: Intake[faust.types.EventT]) -> None:
    """Move the stream's events into the intake until the stream ends or fails; `take` then raises why."""
    try:
        async for event in events:
            try:
                await intake.put(event)
            except BaseException:
                withhold_acks([event])
                raise
    except BaseException as exc:
        intake.close(exc)
        raise
    intake.close(IntakeClosed())


def _value_bytes(event: faust.types.EventT) -> int:
    """What a message holds in memory, roughly: its value (a raw chunk, or a small poll outcome)."""
    return len(event.message.value or b"")


def withhold_acks(events: Iterable[faust.types.EventT]) -> None:
    """Keep messages that were not handled from ever being acknowledged. Marked as acknowledged on the message
    alone, they are never handed to the consumer's acknowledged offsets, so the commit stays before them
    (streams/commit_holes.py) and the next owner of the partition reads them again; Faust's wait for its
    unacknowledged messages at shutdown and at a rebalance counts them as done."""
    for event in events:
        event.message.acked = True
