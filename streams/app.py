"""The Faust app: its topics, tables, agent, timer and web views, declared in one place.

Topology:
    cloudtrail.raw ─┐                           ┌─▶ cloudtrail.events   (enriched, duplicates dropped)
                    ├─ agent `process` ─────────┼─▶ cloudtrail.dlq      (records that are not JSON objects, ...)
    trailhouse.checkpoints (poll outcomes) ─┘   ├─▶ cloudtrail.sources  (SourceState, on every change)
                                                └─▶ cloudtrail.insights (Insight Start/End, streams/insights.py)
    tables: event-ids (de-dup window, RocksDB by default), source-state (per source), insight-sources +
            insight-apis (detector); where each lives: streams/stores.py
    timer: re-evaluates silent sources (ONLINE -> IDLE without new input)
    web:   GET /sources/  the sources this worker holds;  GET /sources/{id}/  routed to the worker that owns it

The agent takes the input in batches of messages (a log-file chunk, or a poll outcome, each) bounded in bytes
(streams/intake.py) and sends what a batch produced before it takes the next: a batch's messages are acknowledged
only after the agent handled them, and Faust commits a `cloudtrail.raw` offset only once it is acknowledged, so
every event is in Kafka before its chunk counts as done (at-least-once). A batch whose handling fails is retried,
then split, and a message that still fails alone is dead-lettered (streams/settle.py); a batch not handled when
the worker stops is never acknowledged. The source state is written once per batch; the de-duplication table
necessarily holds one entry per event id.

Both input topics are keyed by source id with the murmur2 partitioner and have the same partition count, so a
source's chunks, poll outcomes and state live on the same partition and worker.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import weakref
from collections.abc import Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from time import monotonic
from typing import Any

import faust
from aiokafka.errors import IllegalStateError
from faust.streams import _current_event
from faust.types import TP
from faust.web import Request, Response, View

from schemas import Codec
from schemas.records import dead_letter
from streams.batch import BatchResult, encode_events, process_raw
from streams.commit_holes import hold_commits_at_holes
from streams.detection import DetectionBatch
from streams.health import commit_positions, observe_worker
from streams.highwaters import use_exact_highwaters
from streams.insights import Sensitivity
from streams.intake import take_batches, withhold_acks
from streams.outbox import Outbox
from streams.redelivery import HandledOffsets
from streams.settle import GivenUp, Settler
from streams.stall import StallGuard
from streams.state import ChunkSummary, apply_chunk, apply_poll, evaluate, new_state, now_ms, to_record
from streams.stores import chunk_changelog_table, dedup_table, hold_worker_dir
from trailhouse.config import Settings
from trailhouse.kafka import start_group_at_beginning
from trailhouse.metrics import FAILED_BATCHES, REDELIVERED
from trailhouse.security import faust_options, kafka_security
from trailhouse.shutdown import StopOnSignals

_DEAD = Codec.of("DeadLetter")
_STATE = Codec.of("SourceState")
_CHECKPOINT = Codec.of("Checkpoint")
_INSIGHT = Codec.of("Insight")

SILENT_SOURCES_EVERY_S = 30.0
SLOW_BATCH_S = 30.0
# Record batches of up to 256 kB (Faust's default, 16 kB, holds ~8 events): fewer, larger produce requests.
PRODUCER_BATCH_BYTES = 256 * 1024
# The agent takes up to BATCH_BYTES of raw messages at a time (and at most BATCH_MESSAGES), or what arrived within
# BATCH_WAIT_S, and sends what they produce together (streams/outbox.py): chunk by chunk, the producer's work per
# request cost more than the enrichment (bench: worker alone ~1.5-2x faster). The next batch gathers meanwhile, and
# has to cover the wait for the next fetch (Tansu answers a fetch after its whole max wait, 1.5 s with Faust's
# consumer): at 400k events in the bench, batches of 4 MiB ran ~20% slower than of 8 MiB.
BATCH_BYTES = 8 * 1024 * 1024
BATCH_MESSAGES = 1024
BATCH_WAIT_S = 0.05
# Messages Faust fetches and buffers ahead of the intake (streams/intake.py): counted in messages, so kept few.
# Faust's defaults (4,096 messages buffered, every fetched message taken at once) held the whole bench input.
FAUST_BUFFER_MESSAGES = 8
# Room in a produce request for what is not the event itself (record batch header, key, headers).
MESSAGE_OVERHEAD_BYTES = 4096
log = logging.getLogger(__name__)


def max_message_bytes(settings: Settings) -> int:
    """The largest message the worker's producer sends: a raw chunk, and room for what enrichment adds to a record
    (an event carries its record whole, plus the fields taken from it)."""
    return max(settings.raw_chunk_bytes + 64 * 1024, 1_000_000)


def build_app(settings: Settings, bootstrap: str, *, web_port: int) -> faust.App:
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.worker_group,
        broker=[f"kafka://{server.strip()}" for server in bootstrap.split(",")],
        store="memory://",  # the small tables; the de-dup window's store is its own (streams/stores.py)
        datadir=str(settings.worker_data_dir),
        topic_partitions=settings.kafka_partitions,
        topic_replication_factor=settings.kafka_replication,
        producer_compression_type=None if settings.kafka_compression == "none" else settings.kafka_compression,
        producer_max_request_size=max_message_bytes(settings),
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        # Compressed bytes fetched ahead per partition. 1 MB instead held ~8 MB less at the worker's peak in the
        # bench, but end to end ran slower (7.3k and 6.7k events/s against 7.5k and 7.3k, 100k events): Tansu
        # answers a fetch only after Faust's max wait (1.5 s), so a fetch's size bounds the worker's input rate.
        consumer_max_fetch_size=max(4 * settings.raw_chunk_bytes, 4 * 1024 * 1024),
        stream_buffer_maxsize=FAUST_BUFFER_MESSAGES,
        # Faust's default (None) takes, and so unpacks, every message fetched at once: up to
        # consumer_max_fetch_size of compressed record batches per partition (~130 MB at 400k events in the bench).
        broker_max_poll_records=FAUST_BUFFER_MESSAGES,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.rebalance_timeout,
        broker_rebalance_timeout=settings.rebalance_timeout,
        broker_heartbeat_interval=min(3.0, settings.rebalance_timeout / 4),
        # Faust's web server serves the table views (/sources/, routed between workers); /healthz and /metrics
        # come from streams/health.py, as in the other stages, because Faust's starts only after table recovery.
        web_enabled=True,
        web_port=web_port,
        web_bind=settings.worker_web_bind,
        canonical_url=f"http://{settings.worker_web_host}:{web_port}",
        **faust_options(kafka_security(settings)),
    )
    online_window_ms = int(settings.online_window * 1000)
    max_event_bytes = max_message_bytes(settings) - MESSAGE_OVERHEAD_BYTES
    input_topics = (settings.topic_raw, settings.topic_checkpoints)
    inputs = app.topic(*input_topics, key_serializer="raw", value_serializer="raw")
    seen = dedup_table(app, settings)  # event id -> first raw message + 1, per window (streams/stores.py)
    states = app.Table("source-state", default=None, use_partitioner=True)
    # Insights detector state, per source (watermark, open minutes) and per source and API (baseline, insight):
    # one entry per API keeps each changelog message small (an API's week of hourly totals is ~2-3 kB of JSON).
    detector_heads = chunk_changelog_table(app, "insight-sources")
    detector_apis = chunk_changelog_table(app, "insight-apis")
    sensitivity = Sensitivity.of(settings)

    def queue_states(updated: dict[str, dict[str, Any]], now: int, outbox: Outbox) -> None:
        """Queue sources' new states as SourceState messages (the table is written once they are delivered: a
        batch handled again after a failed send must not count its chunks twice, streams/settle.py)."""
        for source_id, state in updated.items():
            outbox.add(settings.topic_sources, source_id.encode(), [_STATE.encode(to_record(state, now))])

    def drop_duplicates(result: BatchResult, raw: faust.types.tuples.Message) -> tuple[list[dict[str, Any]], int]:
        """Events whose id was not seen within the window in another message (the table keeps, per id, the
        raw message that first carried it, + 1: a chunk read again after a crash or a rebalance is not its own
        duplicate, so replays never lose events that the first attempt had not delivered; an id twice in the
        chunk passes once). Windows follow the raw messages' timestamps (stream time)."""
        mark = raw.offset + 1
        table = seen.table
        ids = [e["event_id"] for e in result.events]
        firsts = table.first_marks(ids, raw.timestamp, raw.partition)
        fresh, new_ids, in_chunk = [], [], set()
        for event, event_id, first in zip(result.events, ids, firsts, strict=True):
            if (first and first != mark) or event_id in in_chunk:
                continue
            in_chunk.add(event_id)
            if not first:
                new_ids.append(event_id)
            fresh.append(event)
        table.mark_all(new_ids, mark, raw.timestamp, raw.partition)
        return fresh, len(result.events) - len(fresh)

    async def on_batch(messages: Sequence[faust.types.EventT]) -> None:
        """Handle a batch of input messages and return once Kafka has everything they produced: only then does
        Faust acknowledge them (at-least-once). A source's state is written once per batch, its detector state
        after the batch's insights are delivered (streams/detection.py)."""
        moment = datetime.now(UTC)
        now = int(moment.timestamp() * 1000)
        detection = DetectionBatch(detector_heads, detector_apis, sensitivity)
        updated: dict[str, dict[str, Any]] = {}  # source id -> its new state

        def state_of(source_id: str) -> dict[str, Any]:
            return updated.get(source_id) or states.get(source_id) or new_state(source_id, now)

        def handle(message: faust.types.EventT, outbox: Outbox) -> None:
            processing(message)
            raw = message.message
            if raw.topic == settings.topic_checkpoints:
                checkpoint = _CHECKPOINT.decode(raw.value)
                source_id = checkpoint["source_id"]
                state = evaluate(apply_poll(state_of(source_id), checkpoint), now, online_window_ms)
                updated[source_id] = dict(state, partition=raw.partition)
                return
            result = process_raw(raw.value, location=f"{raw.topic}/{raw.partition}/{raw.offset}", now=moment)
            events, duplicates = drop_duplicates(result, raw)
            key = result.source_id.encode()
            encoded, too_large = encode_events(events, location=result.location, max_bytes=max_event_bytes, now=moment)
            dead_letters = result.dead_letters + too_large
            outbox.add(settings.topic_events, key, encoded)
            outbox.add(settings.topic_dlq, key, (_DEAD.encode(d) for d in dead_letters))
            if not result.source_id:
                return  # an undecodable message: dead-lettered, belongs to no source
            chunk = ChunkSummary(
                first_chunk=result.chunk_index == 0,
                events=len(encoded),
                duplicates=duplicates,
                dead_letters=len(dead_letters),
                ingest_time_ms=result.ingest_time_ms,
                event_times_ms=tuple(e["event_time"] for e in events),
            )
            state = evaluate(apply_chunk(state_of(result.source_id), chunk), now, online_window_ms)
            updated[result.source_id] = dict(state, partition=raw.partition)
            insights = detection.detect(result.source_id, events, raw.offset, message)
            outbox.add(settings.topic_insights, key, (_INSIGHT.encode(i) for i in insights))

        outbox = Outbox()
        for message in messages:
            handle(message, outbox)
        queue_states(updated, now, outbox)
        deliveries = await seen.table.send_unsent(app.producer)  # the de-dup writes' changelog (stores.py)
        deliveries += await outbox.send(app.producer)
        await asyncio.gather(*deliveries)
        states.update(updated)
        detection.store(processing)  # only once its insights are in Kafka: a replay of these chunks re-emits them
        # ... and in Kafka before the batch is acknowledged, or a restart would not replay what the state lacks.
        await asyncio.gather(*[d for t in (detector_heads, detector_apis) for d in await t.send_unsent(app.producer)])

    async def dead_letter_message(message: faust.types.EventT, error: Exception) -> None:
        """Send an input message that cannot be handled to the dead-letter topic, with the error."""
        raw = message.message
        letter = dead_letter(
            source_id=(raw.key or b"").decode(errors="replace"),
            stage="worker",
            reason=(
                f"handling this message failed {settler.retry.attempts} times in a row: {error!r}; its events were "
                "not sent. Report it with this entry (the worker's log has the traceback); the payload is the "
                "message as received, and its log file is still in S3"
            ),
            kind="worker_error",
            location=f"{raw.topic}/{raw.partition}/{raw.offset}",
            payload=raw.value or b"",
            when=datetime.now(UTC),
        )
        outbox = Outbox()
        outbox.add(settings.topic_dlq, raw.key or b"", [_DEAD.encode(letter)])
        await asyncio.gather(*await outbox.send(app.producer))

    settler = Settler(
        handle=on_batch,
        dead_letter=dead_letter_message,
        sleep=app.sleep,
        stopping=lambda: app.should_stop,
        describe=describe,
        on_failure=FAILED_BATCHES.inc,
    )
    guard = StallGuard()
    handled = HandledOffsets()  # what a seek of the guard may deliver again (streams/redelivery.py)
    app.sensors.add(RebalanceWatch(guard))

    @app.timer(interval=1.0)
    async def deliver_stranded_messages() -> None:
        """See streams/stall.py: re-seek when Faust dropped messages fetched while its flow was suspended."""
        if app.rebalancing:
            return  # a seek now would name partitions being taken away (IllegalStateError crashes the app)
        ends, committed = commit_positions(app.consumer, input_topics)
        handled.forget_committed(committed)
        for tp, offset in guard.lagging(ends, committed, monotonic()).items():
            log.info(
                "%s partition %d: committed to %d of %d while idle; reading again from there", *tp, offset, ends[tp]
            )
            # Seek to the offset itself: Faust's `perform_seek` skips a partition committed at 0. In the consumer's
            # thread: aiokafka's fetcher is not thread-safe (a seek from here crashed it). A rebalance that took the
            # partition meanwhile raises; its next owner starts from the commit anyway.
            try:
                await app.consumer.seek_wait({tp: offset})
            except (IllegalStateError, TimeoutError) as exc:
                log.info("no seek of %s: %r", tp, exc)

    agent_task: dict[str, asyncio.Task[Any] | None] = {"task": None}
    last_offsets: dict[tuple[str, int], int] = {}

    @app.timer(interval=10.0)
    async def report_slow_batches() -> None:
        """A batch in the agent for minutes means a send or a table write waits on something: say where."""
        task = agent_task["task"]
        if task is not None and guard.busy_for(monotonic()) > SLOW_BATCH_S:
            where = io.StringIO()
            task.print_stack(file=where)
            log.warning(
                "a batch of messages has been in the agent for %.0f s; it waits in:\n%s",
                guard.busy_for(monotonic()),
                where.getvalue(),
            )

    async def handle_batch(delivered: Sequence[faust.types.EventT]) -> None:
        """Settle a batch (streams/settle.py), but not the messages this worker already handled (a re-seek's
        redelivery, streams/redelivery.py); a batch left unsettled at shutdown is withheld for the next owner."""
        messages, again = handled.first_deliveries([(*position(m), m) for m in delivered])
        if again:
            REDELIVERED.inc(len(again))
            log.info("%d message(s) delivered again after this worker handled them, skipped: %s", len(again), again)
        if not messages:
            return
        for message in messages:
            tp, offset = position(message)
            if tp[0] == settings.topic_raw and last_offsets.get(tp, offset - 1) + 1 < offset:
                # Faust dropped what it fetched while its flow was suspended; streams/commit_holes.py holds
                # the commit before them and the stall guard reads them again (NOTES.md).
                log.warning(
                    "raw partition %d: offsets %d..%d were not delivered to the agent",
                    tp[1],
                    last_offsets[tp] + 1,
                    offset - 1,
                )
            last_offsets[tp] = offset
        guard.delivered(monotonic())
        settled = False
        try:
            await settler.settle(messages)
            settled = True
            handled.handled(position(m) for m in messages)
        except GivenUp:
            log.warning("stopping with %s not handled; the next owner of the partitions reads them", describe(messages))
        finally:
            guard.done(monotonic())
            if not settled:
                withhold_acks(messages)

    @app.agent(inputs, name="process")
    async def process(stream: faust.StreamT) -> None:
        agent_task["task"] = asyncio.current_task()
        batches = take_batches(stream, max_bytes=BATCH_BYTES, max_messages=BATCH_MESSAGES, within=BATCH_WAIT_S)
        try:
            async with aclosing(batches):
                async for delivered in batches:
                    await handle_batch(delivered)
        except Exception as exc:
            await stop_on_failure(exc)
            raise

    async def stop_on_failure(error: Exception) -> None:
        """Faust restarts an agent that raised, forever, while the process stays up and its /healthz stays 200: an
        error outside a batch's settling (streams/settle.py), a bug or a dead letter Kafka refuses, would repeat
        every few seconds and nobody would know. The worker stops instead (exit status 1), so that what supervises
        it (`trailhouse run`, Kubernetes) shows it and restarts it; what was not handled was not acknowledged, so
        its partitions' next owner reads it again."""
        if app.should_stop:
            return  # stopping anyway: an error on the way out is not the agent's failure
        log.critical("the worker's agent failed; stopping the worker (Faust logs the traceback): %r", error)
        await app.crash(error)

    @app.timer(interval=SILENT_SOURCES_EVERY_S)
    async def reevaluate_silent_sources() -> None:
        """Move sources that went quiet from ONLINE to IDLE: no input arrives to do it."""
        now = now_ms()
        actives = app.assignor.assigned_actives()
        changed: dict[str, dict[str, Any]] = {}
        for source_id, state in list(states.items()):
            if not state or TP(settings.topic_raw, state.get("partition", -1)) not in actives:
                continue
            updated = evaluate(state, now, online_window_ms)
            if updated["status"] != state["status"]:
                changed[source_id] = updated
        outbox = Outbox()
        queue_states(changed, now, outbox)
        await asyncio.gather(*await outbox.send(app.producer))
        states.update(changed)

    @app.page("/sources/")
    class AllSources(View):
        """The sources this worker holds: its own and the standby copies of others' (all of them with two
        workers and one standby replica). `trailhouse sources status` reads every source from ClickHouse."""

        async def get(self, request: Request) -> Response:
            now = now_ms()
            return self.json({key: to_record(state, now) for key, state in states.items() if state})

    @app.page("/sources/{source_id}/")
    class OneSource(View):
        @app.table_route(table=states, match_info="source_id")
        async def get(self, request: Request, source_id: str) -> Response:
            state = states.get(source_id)
            if state is None:
                return self.notfound(f"no state for source {source_id!r} (unknown, or nothing polled yet)")
            return self.json(to_record(state, now_ms()))

    return app


def describe(messages: Sequence[faust.types.EventT]) -> str:
    """Where a batch's messages are, for the log: topic/partition/lowest..highest offset, per partition."""
    runs: dict[tuple[str, int], list[int]] = {}
    for message in messages:
        tp, offset = position(message)
        runs.setdefault(tp, []).append(offset)
    return ", ".join(f"{topic}/{partition}/{min(o)}..{max(o)}" for (topic, partition), o in runs.items())


def position(message: faust.types.EventT) -> tuple[tuple[str, int], int]:
    """A message's (topic, partition) and offset."""
    raw = message.message
    return (raw.topic, raw.partition), raw.offset


def processing(message: faust.types.EventT) -> None:
    """Make `message` the one Faust's tables attribute the next writes to: their changelog partition, and the
    stream time of the windowed de-dup table. Faust sets it in the task that iterates the stream, which for a batch
    is the intake's feeder (streams/intake.py), not the agent's task, so the agent sets each message in turn."""
    _current_event.set(weakref.ref(message))


class RebalanceWatch(faust.Sensor):
    """Tells the stall guard when a rebalance (with its table recovery) is over."""

    def __init__(self, guard: StallGuard) -> None:
        super().__init__()
        self._guard = guard

    def on_rebalance_end(self, app: faust.types.AppT, state: dict[str, Any]) -> None:
        self._guard.rebalanced(monotonic())


class BoundedStopWorker(faust.Worker):
    """Faust's worker, stopping as the other stages do (trailhouse/shutdown.py): Faust's own handlers ignore
    every signal after the first, so a stop that waits on a broker gone for good could only be ended by SIGKILL."""

    def __init__(self, app: faust.App, *, stop_timeout: float, **options: Any) -> None:
        super().__init__(app, **options)
        self._stop_on_signals = StopOnSignals("worker", stop_timeout, self._schedule_shutdown)

    def install_signal_handlers(self) -> None:
        super().install_signal_handlers()  # keeps Faust's SIGUSR1 (dump the tasks) and SIGUSR2 (debugger)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self._stop_on_signals, signum)


def run_worker(settings: Settings, bootstrap: str, *, web_port: int) -> None:
    """Run the worker until SIGTERM/SIGINT; Faust's worker commits what was processed and leaves the group."""
    use_exact_highwaters(settings, bootstrap)
    directory_lock = hold_worker_dir(settings)

    hold_commits_at_holes([settings.topic_raw])
    start_group_at_beginning(
        settings, bootstrap, settings.worker_group, [settings.topic_raw, settings.topic_checkpoints]
    )
    app = build_app(settings, bootstrap, web_port=web_port)
    observe_worker(app, settings)
    worker = BoundedStopWorker(
        app, stop_timeout=settings.stop_timeout, loglevel=settings.log_level, quiet=True, override_logging=False
    )
    worker.spinner = None  # its terminal escape codes garble the shared terminal of `trailhouse run`
    try:
        worker.execute_from_commandline()
    finally:
        if directory_lock is not None:
            directory_lock.close()
