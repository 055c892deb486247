"""The messages a batch of input produces, grouped by topic and key and sent together.

The worker takes several `cloudtrail.raw` chunks at a time (streams/app.py). Sent chunk by chunk, each chunk's
events became record batches and produce requests of their own (~45 events per chunk on small log files), and
the producer's per-request work cost more than enriching the events. Queued here, a batch's messages of one topic
and key (one source) go out in as few record batches as fit (streams/produce.py), in the order they were queued,
so a source's messages keep their order on its partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from faust.types import ProducerT

from streams.produce import send_batched


class Outbox:
    def __init__(self) -> None:
        self._queued: dict[tuple[str, bytes], list[bytes]] = {}

    def add(self, topic: str, key: bytes, values: Iterable[bytes]) -> None:
        """Queue `values` on `topic` under `key`, after what was queued there before."""
        self._queued.setdefault((topic, key), []).extend(values)

    async def send(self, producer: ProducerT) -> list[asyncio.Future[Any]]:
        """Hand everything queued to the producer and empty the outbox; returns the deliveries to await."""
        queued, self._queued = self._queued, {}
        deliveries = []
        for (topic, key), values in queued.items():
            deliveries += await send_batched(producer, topic, key, values)
        return deliveries
