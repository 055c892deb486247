"""Settling a batch of input messages when handling it fails: retried, then split, then dead-lettered. No Kafka here.

An exception out of the agent's loop body (a send Kafka refuses, a table write that fails, a bug) would end the
agent, and with it the worker's input, for one bad message or a broker restarting (Faust's own `take_events`
would even acknowledge the batch on the way out). The agent therefore never lets a batch's failure out: `settle`
returns only once every message is handled or dead-lettered, or raises `GivenUp` when the worker stops meanwhile
(the batch is then withheld, streams/intake.py: the next owner of the partitions reads those messages again).

A failing batch is tried `attempts` times in all, with a growing pause (a broker restarting, a leader moving), then
message by message, so that one message that cannot be handled (a poison message) does not hold the others. One
that fails alone `attempts` times goes to the dead-letter topic with the error; if that send fails too (Kafka is
unreachable), the message is tried again after a pause, until Kafka takes one or the other: the partitions wait,
as the sink waits while ClickHouse is down. Handling a message again is safe: the de-dup window lets a chunk's
events through again when the same raw message carries them, and a source's state is written only once a batch
is delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

M = TypeVar("M")
log = logging.getLogger(__name__)


class GivenUp(Exception):
    """The worker is stopping while a batch still fails: its messages stay unacknowledged for the next owner."""


@dataclass(frozen=True)
class Retry:
    attempts: int = 3
    first_pause_s: float = 1.0
    max_pause_s: float = 30.0

    def pause(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure in a row (1, 2, 4, ... up to `max_pause_s`)."""
        return min(self.max_pause_s, self.first_pause_s * 2 ** (failures - 1))


@dataclass(frozen=True)
class Settler(Generic[M]):
    handle: Callable[[Sequence[M]], Awaitable[None]]  # handles the messages and returns once all they produce is sent
    dead_letter: Callable[[M, Exception], Awaitable[None]]  # sends the message with the error to the dead-letter topic
    sleep: Callable[[float], Awaitable[Any]]  # returns early when the worker stops
    stopping: Callable[[], bool]
    describe: Callable[[Sequence[M]], str]  # the messages, for the log
    on_failure: Callable[[], None] = lambda: None  # counts failed attempts
    retry: Retry = Retry()

    async def settle(self, messages: Sequence[M]) -> None:
        """Return once every message is handled or dead-lettered; raise `GivenUp` when the worker stops first."""
        while True:
            error = await self._tried(messages)
            if error is None:
                return
            if len(messages) > 1:
                log.warning("handling %s one message at a time, to find the one that fails", self.describe(messages))
                for message in messages:
                    await self.settle([message])
                return
            try:
                await self.dead_letter(messages[0], error)
                log.error("%s dead-lettered (worker_error): %r", self.describe(messages), error)
                return
            except Exception:
                log.exception("%s could not be dead-lettered either; trying it again", self.describe(messages))
                await self._pause(self.retry.max_pause_s)

    async def _tried(self, messages: Sequence[M]) -> Exception | None:
        """Handle the messages, `retry.attempts` times at most; the last error when none succeeded."""
        failures = 0
        while True:
            try:
                await self.handle(messages)
                return None
            except Exception as exc:
                self.on_failure()
                failures += 1
                if failures >= self.retry.attempts:
                    log.exception("handling %s failed %d times", self.describe(messages), failures)
                    return exc
                pause = self.retry.pause(failures)
                log.warning("handling %s failed (%r); trying again in %.0f s", self.describe(messages), exc, pause)
                await self._pause(pause)

    async def _pause(self, seconds: float) -> None:
        if self.stopping():
            raise GivenUp
        await self.sleep(seconds)
        if self.stopping():
            raise GivenUp
