"""The sink against a real broker (Tansu) and the real ClickHouse engine (chDB)."""

import json
import threading
import time

import pytest
from confluent_kafka import Producer

from schemas import Codec
from sinks.sink import Sink
from sinks.tables import events_table
from streams.enrich import FileContext, enrich
from tests.conftest import wait_drained
from trailhouse.kafka import committed_offsets, producer_options, read_to_end

CTX = FileContext("cloudtrail-218007301253-us-east-1", "k", "218007301253", "us-east-1", 1_800_000_000_000)


def _produce(settings, broker, values):
    producer = Producer(producer_options(settings, broker))
    for value in values:
        producer.produce(settings.topic_events, key=CTX.source_id.encode(), value=value)
    assert producer.flush(30) == 0


def _wait(condition, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


class RunningSink:
    def __init__(self, settings, broker, client):
        self.sink = Sink(settings, broker, client, {settings.topic_events: events_table()})
        self.thread = threading.Thread(target=self.sink.run)

    def __enter__(self):
        self.thread.start()
        return self.sink

    def __exit__(self, *exc):
        self.sink.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


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
