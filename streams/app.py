"""The Faust app: its topics and agents, declared in one place.

Topology:  cloudtrail.raw --enrich--> cloudtrail.events
                                 \\--> cloudtrail.dlq   (records that are not JSON objects, undecodable batches)

The agent handles one log-file chunk per message and sends that chunk's events before it takes the next message:
Faust commits a `cloudtrail.raw` offset only after the agent moved past it, so every event is acknowledged by
Kafka before its file chunk counts as done (at-least-once; duplicates are removed downstream by eventID).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import faust

from schemas import Codec
from streams.batch import BatchResult, process_raw
from streams.health import observe_worker
from trailhouse.config import Settings
from trailhouse.security import faust_options, kafka_security

_EVENT = Codec.of("Event")
_DEAD = Codec.of("DeadLetter")


def build_app(settings: Settings, bootstrap: str) -> faust.App:
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.worker_group,
        broker=[f"kafka://{server.strip()}" for server in bootstrap.split(",")],
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.kafka_partitions,
        topic_replication_factor=settings.kafka_replication,
        producer_compression_type=None if settings.kafka_compression == "none" else settings.kafka_compression,
        producer_max_request_size=max(settings.raw_chunk_bytes + 64 * 1024, 1_000_000),
        consumer_max_fetch_size=max(4 * settings.raw_chunk_bytes, 4 * 1024 * 1024),
        broker_commit_interval=1.0,
        broker_session_timeout=settings.rebalance_timeout,
        broker_rebalance_timeout=settings.rebalance_timeout,
        broker_heartbeat_interval=min(3.0, settings.rebalance_timeout / 4),
        web_enabled=False,  # /healthz and /metrics come from streams/health.py, as in the other stages
        **faust_options(kafka_security(settings)),
    )
    raw_topic = app.topic(settings.topic_raw, key_serializer="raw", value_serializer="raw")

    async def send(result: BatchResult) -> None:
        """Send a chunk's results and wait until Kafka acknowledged all of them."""
        key = result.source_id.encode()
        deliveries = [
            await app.producer.send(settings.topic_events, key, _EVENT.encode(event), None, None, None)
            for event in result.events
        ]
        deliveries += [
            await app.producer.send(settings.topic_dlq, key, _DEAD.encode(dead), None, None, None)
            for dead in result.dead_letters
        ]
        await asyncio.gather(*deliveries)

    @app.agent(raw_topic, name="enrich")
    async def enrich_files(stream: faust.StreamT) -> None:
        async for message in stream.events():
            location = f"{message.message.topic}/{message.message.partition}/{message.message.offset}"
            await send(process_raw(message.value, location=location, now=datetime.now(UTC)))

    return app


def run_worker(settings: Settings, bootstrap: str) -> None:
    """Run the worker until SIGTERM/SIGINT; Faust's worker commits what was processed and leaves the group."""
    app = build_app(settings, bootstrap)
    observe_worker(app, settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, override_logging=False)
    worker.spinner = None  # its terminal escape codes garble the shared terminal of `trailhouse run`
    worker.execute_from_commandline()
