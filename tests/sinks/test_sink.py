"""The sink against a real broker (Tansu) and the real ClickHouse engine (chDB)."""

import json
import threading
import time
from datetime import UTC, datetime

import pytest
from clickhouse_connect.driver.exceptions import OperationalError
from confluent_kafka import Producer
from fastavro import parse_schema

from schemas import Codec
from schemas.codec import SCHEMA_DIR
from sinks.clickhouse import ClickHouseRejected, insert
from sinks.sink import Sink, insert_settings
from sinks.tables import events_table, sink_tables
from streams.enrich import FileContext, enrich
from tests.conftest import wait_drained
from trailhouse.kafka import committed_offsets, producer_options, read_to_end

CTX = FileContext("cloudtrail-218007301253-us-east-1", "k", "218007301253", "us-east-1", 1_800_000_000_000)


def _produce(settings, broker, values, topic=None):
    producer = Producer(producer_options(settings, broker))
    for value in values:
        producer.produce(topic or settings.topic_events, key=CTX.source_id.encode(), value=value)
    assert producer.flush(30) == 0


def _wait(condition, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


class RunningSink:
    """A sink in a thread; `error` is what ended its run() early, if anything did."""

    def __init__(self, settings, broker, client, sink_class=Sink, **kwargs):
        self.sink = sink_class(settings, broker, client, sink_tables(settings), **kwargs)
        self.error = None
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        try:
            self.sink.run()
        except Exception as exc:
            self.error = exc

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.sink.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


class Crash(Exception):
    """Stands for the process being killed."""


class CrashesBeforeItsFirstCommit(Sink):
    """Inserts its first batch, then dies before committing the offsets: the window exactly-once is about."""

    def _commit(self, batch):
        raise Crash(f"killed after inserting {batch.token}")


def _stop_merges(client, settings):
    """A merge would collapse duplicate rows and hide them from `_count(final=False)`."""
    client.command(f"SYSTEM STOP MERGES {settings.clickhouse_database}.events")


def _count(client, settings, final=True):
    table = f"{settings.clickhouse_database}.events" + (" FINAL" if final else "")
    return client.query(f"SELECT count() FROM {table}").result_rows[0][0]


def test_events_land_once_and_offsets_are_committed_after_the_insert(settings, topics, clickhouse, real_records):
    codec = Codec.of("Event")
    events = [enrich(json.dumps(r), CTX) for r in real_records[:500]]
    _produce(settings, topics, [codec.encode(e) for e in events] + [b"not avro"])

    with RunningSink(settings, topics, clickhouse):
        wait_drained(settings, topics, settings.sink_group, settings.topic_events)

    assert _count(clickhouse, settings) == 500
    stored = clickhouse.query(
        f"SELECT event_id, event_name, user_arn, record FROM {settings.clickhouse_database}.events"
    ).result_rows
    by_id = {row[0]: row for row in stored}
    for event in events:
        assert by_id[event["event_id"]][1:] == (event["event_name"], event["user_arn"] or "", event["record"])
    [dead] = [Codec.of("DeadLetter").decode(v) for _, v in read_to_end(settings, topics, settings.topic_dlq)]
    assert dead["stage"] == "sink" and dead["error_type"] == "undecodable_message" and dead["payload"] == b"not avro"


def test_reading_the_same_events_again_adds_nothing_to_search(settings, topics, clickhouse, real_records):
    codec = Codec.of("Event")
    values = [codec.encode(enrich(json.dumps(r), CTX)) for r in real_records[:200]]
    _produce(settings, topics, values + values[:50])  # a producer retry: 50 duplicates

    with RunningSink(settings, topics, clickhouse):
        _wait(lambda: _count(clickhouse, settings) == 200, "200 distinct events")
    replay = settings.with_(sink_group=settings.sink_group + "-replay")  # a second sink reads it all again
    with RunningSink(replay, topics, clickhouse):
        wait_drained(replay, topics, replay.sink_group, replay.topic_events)

    assert _count(clickhouse, settings) == 200


def test_an_empty_topic_commits_nothing_and_stops_promptly(settings, topics, clickhouse):
    started = time.monotonic()
    with RunningSink(settings, topics, clickhouse):
        pass
    assert time.monotonic() - started < 30
    assert committed_offsets(settings, topics, settings.sink_group, settings.topic_events) == {}
    assert _count(clickhouse, settings) == 0


def test_a_crash_between_insert_and_commit_inserts_nothing_twice(settings, topics, clickhouse, real_records):
    _stop_merges(clickhouse, settings)
    codec = Codec.of("Event")
    _produce(settings, topics, [codec.encode(enrich(json.dumps(r), CTX)) for r in real_records[:300]])

    with RunningSink(settings, topics, clickhouse, CrashesBeforeItsFirstCommit) as crashed:
        _wait(lambda: crashed.error is not None, "the injected crash")
    assert isinstance(crashed.error, Crash)
    inserted_before_crash = _count(clickhouse, settings, final=False)
    assert 0 < inserted_before_crash <= 300
    assert committed_offsets(settings, topics, settings.sink_group, settings.topic_events) == {}

    with RunningSink(settings, topics, clickhouse):  # the restarted sink reads the crashed batch again
        wait_drained(settings, topics, settings.sink_group, settings.topic_events)

    assert _count(clickhouse, settings, final=False) == 300, "the replayed batch was dropped by its token"
    assert _count(clickhouse, settings) == 300


class SeesTheClockAfterEveryMessage(Sink):
    """Checks the batches' time bound after every message, as when messages trickle in slower than the bound."""

    def _add(self, message):
        super()._add(message)
        self._flush(self._is_due)


def test_a_crashed_batch_read_back_slowly_is_still_written_as_the_same_batch(
    settings, topics, clickhouse, real_records
):
    _stop_merges(clickhouse, settings)
    codec = Codec.of("Event")
    _produce(settings, topics, [codec.encode(enrich(json.dumps(r), CTX)) for r in real_records[:300]])
    with RunningSink(settings, topics, clickhouse, CrashesBeforeItsFirstCommit) as crashed:
        _wait(lambda: crashed.error is not None, "the injected crash")
    assert isinstance(crashed.error, Crash)

    impatient = settings.with_(sink_batch_seconds=0.0)  # without the replay rule, every message would be a batch
    with RunningSink(impatient, topics, clickhouse, SeesTheClockAfterEveryMessage):
        wait_drained(impatient, topics, impatient.sink_group, impatient.topic_events)

    assert _count(clickhouse, settings, final=False) == 300


def test_the_same_batch_inserted_twice_is_absorbed(settings, clickhouse, real_records):
    _stop_merges(clickhouse, settings)
    spec = events_table()
    columns = spec.to_columns([enrich(json.dumps(r), CTX) for r in real_records[:100]])
    table = f"{settings.clickhouse_database}.events"
    for _ in range(2):
        insert(clickhouse, table, spec.columns, columns, dedup_token="events:0:0:99")
    assert _count(clickhouse, settings, final=False) == 100


def test_a_batch_retried_after_it_reached_events_but_not_event_numbers_fills_event_numbers_once(
    settings, clickhouse, real_records
):
    spec = events_table()
    columns = spec.to_columns([enrich(json.dumps(r), CTX) for r in real_records[:100]])
    db = settings.clickhouse_database

    def insert_batch() -> None:
        options = insert_settings(cluster=False)
        insert(clickhouse, f"{db}.events", spec.columns, columns, dedup_token="events:0:0:99", settings=options)

    def numbers() -> int:
        return clickhouse.query(f"SELECT count() FROM {db}.event_numbers").result_rows[0][0]

    clickhouse.command(f"DETACH TABLE {db}.event_numbers_mv")  # the insert fails after writing `events`
    insert_batch()
    clickhouse.command(f"ATTACH TABLE {db}.event_numbers_mv")
    assert numbers() == 0
    insert_batch()
    expected = numbers()
    assert expected >= 100  # every record holds its account number at least
    insert_batch()
    assert numbers() == expected
    assert _count(clickhouse, settings, final=False) == 100


def test_a_row_clickhouse_refuses_goes_to_the_dead_letter_topic_and_the_rest_lands(
    settings, topics, clickhouse, real_records
):
    clickhouse.command(
        f"ALTER TABLE {settings.clickhouse_database}.events ADD CONSTRAINT no_poison CHECK event_name != 'Poison'"
    )
    codec = Codec.of("Event")
    events = [enrich(json.dumps(r), CTX) for r in real_records[:50]]
    events[17] = events[17] | {"event_name": "Poison"}
    _produce(settings, topics, [codec.encode(e) for e in events])

    with RunningSink(settings, topics, clickhouse):
        wait_drained(settings, topics, settings.sink_group, settings.topic_events)

    assert _count(clickhouse, settings) == 49
    [dead] = [Codec.of("DeadLetter").decode(v) for _, v in read_to_end(settings, topics, settings.topic_dlq)]
    assert dead["error_type"] == "rejected_by_clickhouse" and "VIOLATED_CONSTRAINT" in dead["reason"]
    assert codec.decode(dead["payload"])["event_id"] == events[17]["event_id"]


def test_a_message_whose_body_is_not_an_event_goes_to_the_dead_letter_topic_and_the_rest_lands(
    settings, topics, clickhouse, real_records
):
    """The sink checks headers only; ClickHouse's Avro reader finds the broken body, the split isolates it."""
    codec = Codec.of("Event")
    values = [codec.encode(enrich(json.dumps(r), CTX)) for r in real_records[:40]]
    broken = values[29][:10] + b"\xff" * 40  # the right header, a body that is not an Event
    _produce(settings, topics, values[:29] + [broken] + values[30:])

    with RunningSink(settings, topics, clickhouse):
        wait_drained(settings, topics, settings.sink_group, settings.topic_events)

    assert _count(clickhouse, settings) == 39
    [dead] = [Codec.of("DeadLetter").decode(v) for _, v in read_to_end(settings, topics, settings.topic_dlq)]
    assert dead["error_type"] == "rejected_by_clickhouse" and dead["payload"] == broken


def test_events_of_an_older_schema_version_land_beside_current_ones(settings, topics, clickhouse, real_records):
    older = parse_schema(json.loads((SCHEMA_DIR / "history" / "event.v1.avsc").read_text()))
    old_codec, codec = Codec(older, []), Codec.of("Event")
    events = [enrich(json.dumps(r), CTX) for r in real_records[:20]]
    old_fields = {f["name"] for f in older["fields"]}
    values = [old_codec.encode({k: v for k, v in e.items() if k in old_fields}) for e in events[:10]]
    _produce(settings, topics, values + [codec.encode(e) for e in events[10:]])

    with RunningSink(settings, topics, clickhouse):
        wait_drained(settings, topics, settings.sink_group, settings.topic_events)

    rows = clickhouse.query(
        f"SELECT event_id, actor FROM {settings.clickhouse_database}.events FINAL ORDER BY event_id"
    ).result_rows
    actors = dict(rows)
    assert sorted(actors) == sorted(e["event_id"] for e in events)
    assert {actors[e["event_id"]] for e in events[:10]} == {""}, "v1 has no actor: the column default"
    assert [actors[e["event_id"]] for e in events[10:]] == [e["actor"] or "" for e in events[10:]]
    assert read_to_end(settings, topics, settings.topic_dlq) == []


def test_a_refused_statement_stops_the_sink_without_dead_lettering_or_committing(
    settings, topics, clickhouse, real_records
):
    clickhouse.command(f"DROP TABLE {settings.clickhouse_database}.events")
    codec = Codec.of("Event")
    _produce(settings, topics, [codec.encode(enrich(json.dumps(r), CTX)) for r in real_records[:20]])

    with RunningSink(settings, topics, clickhouse) as running:
        _wait(lambda: running.error is not None, "the sink to stop")

    assert isinstance(running.error, ClickHouseRejected) and not running.error.about_rows
    assert "events" in str(running.error)
    assert read_to_end(settings, topics, settings.topic_dlq) == []
    assert committed_offsets(settings, topics, settings.sink_group, settings.topic_events) == {}


def test_alerts_go_to_their_own_table_by_the_same_mechanism(settings, topics, clickhouse):
    alert = {
        "alert_id": "a-1",
        "rule_id": "root-console-login",
        "severity": "high",
        "alert_time": datetime(2023, 7, 10, 12, 0, tzinfo=UTC),
        "detect_time": datetime(2023, 7, 10, 12, 1, tzinfo=UTC),
        "source_id": CTX.source_id,
        "recipient_account_id": "218007301253",
        "event_ids": ["e-1", "e-2"],
        "summary": "root signed in to the console",
    }
    _produce(settings, topics, [Codec.of("Alert").encode(alert)] * 2, topic=settings.topic_alerts)

    with RunningSink(settings, topics, clickhouse):
        wait_drained(settings, topics, settings.sink_group, settings.topic_alerts)

    rows = clickhouse.query(
        f"SELECT alert_id, rule_id, event_ids, summary FROM {settings.clickhouse_database}.alerts FINAL"
    ).result_rows
    assert rows == [("a-1", "root-console-login", ["e-1", "e-2"], "root signed in to the console")]


def test_batches_are_bounded_by_bytes(settings, topics, clickhouse, real_records):
    codec = Codec.of("Event")
    values = [codec.encode(enrich(json.dumps(r), CTX)) for r in real_records[:200]]
    _produce(settings, topics, values)
    writes = []
    small = settings.with_(sink_batch_bytes=sum(map(len, values)) // 4, sink_batch_seconds=30.0)

    with RunningSink(small, topics, clickhouse, on_write=lambda topic, n: writes.append(n)):
        wait_drained(small, topics, small.sink_group, small.topic_events)

    assert sum(writes) == 200 and len(writes) >= 4
    assert _count(clickhouse, settings) == 200


class RecordsHeldBytes(Sink):
    """Notes, at each write, the message bytes held in the batches of all partitions."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.held = []

    def _write_with_retry(self, batch):
        self.held.append(sum(b.size_bytes for b in self._batches.values()))
        super()._write_with_retry(batch)


def test_the_batches_of_all_partitions_together_are_bounded_by_bytes(settings, topics, clickhouse, real_records):
    codec = Codec.of("Event")
    values = [codec.encode(enrich(json.dumps(r), CTX)) for r in real_records[:300]]
    producer = Producer(producer_options(settings, topics))
    for i, value in enumerate(values):
        producer.produce(settings.topic_events, value=value, partition=i % 3)
    assert producer.flush(30) == 0
    bound = sum(map(len, values)) // 4  # each partition holds ~1/3: alone, none would reach it before the others
    small = settings.with_(sink_batch_bytes=bound, sink_batch_seconds=2.0)

    with RunningSink(small, topics, clickhouse, sink_class=RecordsHeldBytes) as running:
        wait_drained(small, topics, small.sink_group, small.topic_events)

    assert len(running.sink.held) >= 4
    assert max(running.sink.held) < bound + max(map(len, values))
    assert _count(clickhouse, settings) == 300


class FlakyClickHouse:
    """A client whose first inserts into `events` fail as if the server were unreachable; the rest pass through."""

    def __init__(self, client, failures):
        self._client = client
        self.failures = failures

    def raw_insert(self, table, *args, **kwargs):
        if table.endswith(".events") and self.failures:
            self.failures -= 1
            raise OperationalError("connection refused")
        return self._client.raw_insert(table, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_an_unavailable_clickhouse_is_retried_until_the_rows_land_once(settings, topics, clickhouse, real_records):
    codec = Codec.of("Event")
    _produce(settings, topics, [codec.encode(enrich(json.dumps(r), CTX)) for r in real_records[:100]])
    flaky = FlakyClickHouse(clickhouse, failures=2)

    with RunningSink(settings, topics, flaky) as running:
        wait_drained(settings, topics, settings.sink_group, settings.topic_events)

    assert running.error is None and flaky.failures == 0
    assert _count(clickhouse, settings, final=False) == 100
    assert read_to_end(settings, topics, settings.topic_dlq) == []
