import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from streams.settle import GivenUp, Retry, Settler


@dataclass
class Worker:
    """What the agent gives the settler, recording what happened: `failing` maps a message to how many more
    times handling a batch that holds it raises (-1: always); `kafka_down` makes dead-lettering fail too."""

    failing: dict[str, int] = field(default_factory=dict)
    kafka_down: int = 0
    stop_after_pauses: int | None = None
    handled: list[list[str]] = field(default_factory=list)
    dead: list[tuple[str, str]] = field(default_factory=list)
    pauses: list[float] = field(default_factory=list)
    failures: int = 0

    async def handle(self, messages: Sequence[str]) -> None:
        for message in messages:
            left = self.failing.get(message, 0)
            if left:
                self.failing[message] = left - 1 if left > 0 else left
                raise RuntimeError(f"cannot handle {message}")
        self.handled.append(list(messages))

    async def dead_letter(self, message: str, error: Exception) -> None:
        if self.kafka_down:
            self.kafka_down -= 1
            raise ConnectionError("broker unreachable")
        self.dead.append((message, str(error)))

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)

    def stopping(self) -> bool:
        return self.stop_after_pauses is not None and len(self.pauses) >= self.stop_after_pauses

    def failed(self) -> None:
        self.failures += 1

    def settler(self) -> Settler[str]:
        return Settler(
            handle=self.handle,
            dead_letter=self.dead_letter,
            sleep=self.sleep,
            stopping=self.stopping,
            describe=lambda messages: ",".join(messages),
            on_failure=self.failed,
            retry=Retry(attempts=3, first_pause_s=1.0, max_pause_s=30.0),
        )


def test_a_batch_that_fails_once_is_handled_whole_on_the_next_attempt():
    worker = Worker(failing={"b": 1})
    asyncio.run(worker.settler().settle(["a", "b", "c"]))
    assert worker.handled == [["a", "b", "c"]]
    assert (worker.dead, worker.pauses, worker.failures) == ([], [1.0], 1)


def test_a_poison_message_is_dead_lettered_and_the_others_are_handled_in_order():
    worker = Worker(failing={"b": -1})
    asyncio.run(worker.settler().settle(["a", "b", "c"]))
    assert worker.handled == [["a"], ["c"]]
    assert worker.dead == [("b", "cannot handle b")]
    # the batch 3 times (pauses 1, 2), then "a" once, "b" 3 times (pauses 1, 2), "c" once
    assert worker.pauses == [1.0, 2.0, 1.0, 2.0]
    assert worker.failures == 6


def test_a_message_that_cannot_be_dead_lettered_either_is_tried_again_until_kafka_takes_it():
    """Kafka unreachable: nothing is given up; the message is tried again after the longest pause."""
    worker = Worker(failing={"a": 4}, kafka_down=1)
    asyncio.run(worker.settler().settle(["a"]))
    # 3 failures, the dead letter refused, a 4th failure, then handled: never dead-lettered
    assert worker.handled == [["a"]]
    assert worker.dead == []
    assert worker.pauses == [1.0, 2.0, 30.0, 1.0]


def test_a_worker_stopping_while_a_batch_fails_gives_it_up_unhandled():
    worker = Worker(failing={"a": -1}, stop_after_pauses=1)
    with pytest.raises(GivenUp):
        asyncio.run(worker.settler().settle(["a", "b"]))
    assert (worker.handled, worker.dead) == ([], [])


def test_pauses_double_up_to_the_longest():
    retry = Retry(first_pause_s=1.0, max_pause_s=30.0)
    assert [retry.pause(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
