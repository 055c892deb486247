"""Input messages delivered to the worker a second time are skipped, not handled twice. Pure logic.

The stall guard (streams/stall.py) seeks a partition back to its committed offset when the agent sits idle while
the partition is behind. When Faust was only late (seen: 3 s after a rebalance, with the messages still in its
buffers) both copies arrive: the buffered one, then the one the seek fetched. The de-dup window cannot absorb the
second copy, because it lets a chunk through again when the same raw message carries it (a replay after a crash
must re-send what the first attempt may not have delivered), so its events reached the events topic twice.

A message whose batch this process finished handling has its outputs in Kafka: skipping a later copy of it loses
nothing. Offsets are kept per partition from the batch's end until the group's commit passes them (or the
partition leaves this worker), so the set holds at most the uncommitted tail of each partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

TP = tuple[str, int]
M = TypeVar("M")


@dataclass
class HandledOffsets:
    _offsets: dict[TP, set[int]] = field(default_factory=dict)

    def first_deliveries(self, messages: Sequence[tuple[TP, int, M]]) -> tuple[list[M], list[tuple[TP, int]]]:
        """The messages (tp, offset, message) not handled before nor earlier in this batch, and the (tp, offset)
        of the others, in order."""
        fresh: list[M] = []
        again: list[tuple[TP, int]] = []
        in_batch: set[tuple[TP, int]] = set()
        for tp, offset, message in messages:
            if offset in self._offsets.get(tp, ()) or (tp, offset) in in_batch:
                again.append((tp, offset))
            else:
                in_batch.add((tp, offset))
                fresh.append(message)
        return fresh, again

    def handled(self, positions: Iterable[tuple[TP, int]]) -> None:
        """Record messages whose outputs Kafka has acknowledged."""
        for tp, offset in positions:
            self._offsets.setdefault(tp, set()).add(offset)

    def forget_committed(self, committed: Mapping[TP, int]) -> None:
        """Drop offsets below each partition's commit (never read again) and partitions not held any more."""
        for tp in list(self._offsets):
            if tp not in committed:
                del self._offsets[tp]
            else:
                self._offsets[tp] = {offset for offset in self._offsets[tp] if offset >= committed[tp]}

    def __len__(self) -> int:
        return sum(len(offsets) for offsets in self._offsets.values())
