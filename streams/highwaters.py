"""Exact partition ends for Faust's table recovery on brokers whose ListOffsets(latest) is too low.

Faust recovers a table by reading its changelog up to the "highwater" it gets from ListOffsets(latest). Tansu 0.6
(the embedded broker) answers with the last batch's base offset + 1, so recovery would stop before the last
batch and silently lose those table updates. The worker therefore asks for the end the way trailhouse/kafka.py
finds it (reading to end-of-partition): exact on every broker, for the price of one short read per changelog
topic at each recovery.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from trailhouse.config import Settings
from trailhouse.kafka import end_offsets


def use_exact_highwaters(settings: Settings, bootstrap: str) -> None:
    async def highwaters(self: object, partitions: Iterable[TP]) -> Mapping[TP, int]:
        by_topic: dict[str, list[TP]] = defaultdict(list)
        for tp in partitions:
            by_topic[tp.topic].append(tp)
        loop = asyncio.get_running_loop()
        topics = list(by_topic)
        found = await asyncio.gather(
            *(loop.run_in_executor(None, lambda t=topic: end_offsets(settings, bootstrap, t)) for topic in topics)
        )
        return {
            tp: ends.get(tp.partition, 0) for topic, ends in zip(topics, found, strict=True) for tp in by_topic[topic]
        }

    faust_aiokafka.AIOKafkaConsumerThread._highwaters = highwaters  # type: ignore[method-assign]
