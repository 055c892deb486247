"""Sending many messages of one key at once: aiokafka record batches instead of one `send` per message.

Faust's `producer.send` costs tens of microseconds per message (a future, the partitioner, the accumulator, and
Faust's own bookkeeping), more than enriching the record. A chunk's events all share one key (the source id), so
they go to one partition: they are appended to record batches and each batch is handed to aiokafka whole. Same
partition (Faust's `key_partition`, aiokafka's murmur2 partitioner), same order, same compression and acks as a
send per message; only the number of futures to wait for changes (one per batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from faust.types import ProducerT


async def send_batched(
    producer: ProducerT, topic: str, key: bytes, values: Iterable[bytes]
) -> list[asyncio.Future[Any]]:
    """Queue `values` on `topic` under `key`, in order; returns the deliveries to await (one per record batch)."""
    values = iter(values)
    first = next(values, None)
    if first is None:
        return []
    kafka = producer._ensure_producer()  # type: ignore[attr-defined]  # the aiokafka producer under Faust's
    await kafka.partitions_for(topic)  # metadata, for the partitioner
    partition = producer.key_partition(topic, key).partition
    return await send_records(producer, topic, partition, ((key, value) for value in (first, *values)))


async def send_records(
    producer: ProducerT, topic: str, partition: int, records: Iterable[tuple[bytes, bytes]]
) -> list[asyncio.Future[Any]]:
    """Queue (key, value) records on one partition of `topic`, in order; returns the deliveries to await (one per
    record batch, each resolving to the metadata of the batch's first record)."""
    kafka = producer._ensure_producer()  # type: ignore[attr-defined]
    deliveries = []
    batch = kafka.create_batch()
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is not None:
            continue
        if batch.record_count():  # full: send it and start the next
            deliveries.append(await kafka.send_batch(batch, topic, partition=partition))
            batch = kafka.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # larger than a whole batch: alone
            deliveries.append(await kafka.send(topic, value, key=key, partition=partition))
    if batch.record_count():
        deliveries.append(await kafka.send_batch(batch, topic, partition=partition))
    return deliveries
