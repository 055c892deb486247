from datetime import UTC, datetime

from schemas import Codec
from streams.batch import process_raw

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def _raw(records: list[str]) -> bytes:
    return Codec.of("RawBatch").encode(
        {
            "source_id": "cloudtrail-111122223333-us-east-1",
            "bucket": "s3://trail",
            "object_key": "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/24/f.json.gz",
            "account": "111122223333",
            "region": "us-east-1",
            "etag": "e",
            "chunk_index": 2,
            "chunk_count": 3,
            "ingest_time": NOW,
            "records": records,
        }
    )


def test_a_chunk_becomes_events_and_its_bad_records_dead_letters():
    result = process_raw(_raw(['{"eventID":"a"}', "{oops", '{"eventID":"b"}']), location="raw/0/7", now=NOW)
    assert result.source_id == "cloudtrail-111122223333-us-east-1"
    assert [e["event_id"] for e in result.events] == ["a", "b"]
    assert all(e["ingest_time"] == int(NOW.timestamp() * 1000) for e in result.events)
    [dead] = result.dead_letters
    assert dead["error_type"] == "not_json" and dead["stage"] == "worker"
    assert (
        dead["location"] == "s3://trail/AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/24/f.json.gz#chunk2/record1"
    )
    assert dead["payload"] == b"{oops"


def test_a_message_that_is_not_a_raw_batch_is_dead_lettered_whole():
    result = process_raw(b"garbage", location="raw/1/42", now=NOW)
    assert result.events == []
    [dead] = result.dead_letters
    assert (dead["error_type"], dead["location"], dead["payload"]) == ("undecodable_message", "raw/1/42", b"garbage")
