"""The publisher's queue: bounded by poll_queue_bytes, waited on when full, never dropping or reordering."""

import json
import time
from datetime import UTC, datetime

import pytest

from producers import publisher as publisher_module
from producers.publisher import FileRef, RawPublisher
from schemas import Codec
from trailhouse.errors import KafkaUnavailable
from trailhouse.kafka import read_to_end

REF = FileRef(
    "src", "file:///bucket", "AWSLogs/111122223333/CloudTrail/us-east-1/f.json.gz", "e", "111122223333", "us-east-1"
)
CHUNK_BYTES = 65_536


def _chunks(count: int) -> list[list[str]]:
    """`count` chunks of one ~60 kB record each: two fit in the smallest queue allowed."""
    return [[json.dumps({"eventID": f"e{i}", "pad": "x" * 60_000})] for i in range(count)]


def test_a_file_many_times_the_queue_is_published_whole_and_in_order(topics, settings):
    settings = settings.with_(raw_chunk_bytes=CHUNK_BYTES, poll_queue_bytes=CHUNK_BYTES * 2)
    publisher = RawPublisher(settings, topics)
    chunks = _chunks(40)  # ~2.4 MB through a queue of 128 kB

    publisher.publish_file(REF, chunks, datetime.now(UTC))
    publisher.flush()

    codec = Codec.of("RawBatch")
    batches = [codec.decode(v) for _, v in read_to_end(settings, topics, settings.topic_raw)]
    assert [b["chunk_index"] for b in batches] == list(range(40))
    assert [b["records"] for b in batches] == chunks


def test_a_full_queue_waits_for_kafka_then_says_it_is_unavailable(settings, monkeypatch):
    monkeypatch.setattr(publisher_module, "FLUSH_TIMEOUT_S", 1.0)
    settings = settings.with_(raw_chunk_bytes=CHUNK_BYTES, poll_queue_bytes=CHUNK_BYTES * 2)
    publisher = RawPublisher(settings, "127.0.0.1:1")  # nothing listens: nothing is ever acknowledged

    started = time.monotonic()
    with pytest.raises(KafkaUnavailable, match="poll_queue_bytes"):
        publisher.publish_file(REF, _chunks(3), datetime.now(UTC))  # the third does not fit
    assert time.monotonic() - started >= 1.0
