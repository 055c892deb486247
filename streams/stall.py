"""Detecting messages Faust fetched but never delivered to the agent, around a rebalance. Pure logic.

Faust resumes fetching a moment before it resumes the flow of messages to agents after a rebalance's table
recovery; what it drains in between is marked as read and dropped (seen here: files and poll outcomes published
while a worker restored its tables were never processed, so `run --once` waited forever). The guard watches,
for a while after each rebalance, whether a partition is not committed to its end while the agent is idle
(the commit is held at a dropped message by streams/commit_holes.py, so this also finds messages dropped before
others that were delivered; idle means not working on a message: a chunk waiting for its deliveries under
backpressure is busy, not stalled, and seeking under it would only read the same chunks again); if so the worker
seeks those partitions back to their committed offsets, which delivers them again (a message the worker had
handled, or that Faust was only late to deliver, then comes twice: streams/redelivery.py skips the second copy).
The seek names each offset itself: aiokafka's `seek_to_committed` leaves a partition committed at 0, or not at
all, where it is, so a message dropped there would never be read again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

TP = tuple[str, int]


@dataclass
class StallGuard:
    idle_s: float = 3.0  # the agent received nothing for this long...
    watch_s: float = 120.0  # ...within this long after a rebalance...
    max_seeks: int = 5  # ...at most this many times per rebalance
    _last_delivery: float = 0.0
    _busy: bool = False
    _rebalanced_at: float | None = None
    _seeks: int = 0

    def rebalanced(self, now: float) -> None:
        self._rebalanced_at, self._seeks, self._last_delivery = now, 0, now

    def delivered(self, now: float) -> None:
        """The agent received a message and works on it until `done`."""
        self._last_delivery, self._busy = now, True

    def done(self, now: float) -> None:
        self._last_delivery, self._busy = now, False

    def busy_for(self, now: float) -> float:
        """Seconds the agent has been working on its current message (0 when idle)."""
        return now - self._last_delivery if self._busy else 0.0

    def lagging(self, ends: Mapping[TP, int], committed: Mapping[TP, int], now: float) -> dict[TP, int]:
        """The partitions to read again from their committed offsets (empty: leave the worker be): those not
        committed to their end while the agent sits idle, whose messages were never delivered (dropped after
        the last delivered message, or before it, where streams/commit_holes.py holds the commit)."""
        if self._rebalanced_at is None or now - self._rebalanced_at > self.watch_s or self._seeks >= self.max_seeks:
            return {}
        if self._busy or now - self._last_delivery < self.idle_s:
            return {}
        behind = {tp: committed.get(tp, 0) for tp, end in ends.items() if end > committed.get(tp, 0)}
        if behind:
            self._seeks += 1
            self._last_delivery = now  # give the seek time to deliver before judging again
        return behind
