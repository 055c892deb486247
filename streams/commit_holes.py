"""Never commit past a message the agent did not receive.

Faust fetches while a rebalance suspends the flow to agents; what it fetches then is marked as read and dropped
(NOTES.md, issue 4). Its commit logic then commits the first run of acknowledged offsets even when it does not
start at the committed offset: a dropped message right at the committed offset (its check allows a distance of
one) or anywhere on a partition committed at 0 (stored as None, so the check is skipped) is committed past and
never processed. Seen as a SIGKILLed worker's chunks missing from search (62 events of 24,000 in one run).

For the topics given (never compacted, never transactional: their offsets have no gaps), the commit is held
while the message at the committed offset has not been acknowledged. Faust's own gap records are cleared there:
after a seek it records the distance to a message fetched before the seek as a gap, merges it into the
acknowledged offsets and commits past the messages the seek is about to deliver (seen: a commit from 275 to 283
while 275..281 had never reached the agent). The stall guard (streams/stall.py) sees the partition behind while
the agent idles and seeks back to the committed offset, which delivers the dropped messages again.

A commit the broker refused (the group was rebalancing) is recorded by Faust as made all the same, and the
acknowledged offsets it covered are already forgotten: the worker then believed a partition committed that the
group had not, and never committed it again (a partition committed at 0 stays at 0). Such a commit is forgotten
here; the commit is held there, and the rebalance's seek or the stall guard reads those messages again.

Limit: if retention deleted a raw partition's messages past the group's committed offset, the commit stays
held there (the worker's lag grows and the stall guard logs its seeks); reset the group's offsets
(`kafka-consumer-groups --reset-offsets --to-earliest`) to move on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from faust.transport.consumer import Consumer
from faust.types import TP

log = logging.getLogger(__name__)


def hold_commits_at_holes(topics: Iterable[str]) -> None:
    held = frozenset(topics)
    faust_new_offset = Consumer._new_offset

    def _new_offset(self: Consumer, tp: TP) -> int | None:
        acked = self._acked[tp]
        if tp.topic in held:
            self._gap[tp].clear()  # no real gaps here; a recorded one would be merged into `acked` and skipped
            committed = self._committed_offset.get(tp) or 0  # Faust keeps a commit at 0 as None
            if acked and min(acked) > committed:
                return None
        return faust_new_offset(self, tp)

    Consumer._new_offset = _new_offset  # type: ignore[method-assign]

    faust_commit_offsets = Consumer._commit_offsets

    async def _commit_offsets(self: Consumer, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        before = {tp: self._committed_offset.get(tp) for tp in offsets}
        did_commit = await faust_commit_offsets(self, offsets, start_new_transaction)
        if not did_commit and offsets:
            log.info("commit of %s not taken (the group is rebalancing); it is made again after", dict(offsets))
            self._committed_offset.update(before)
        return did_commit

    Consumer._commit_offsets = _commit_offsets  # type: ignore[method-assign]
