from datetime import UTC, datetime

from schemas import Codec
from streams.batch import encode_events, process_raw

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

    out_of_range = Codec.of("RawBatch").encode({**Codec.of("RawBatch").decode(_raw([])), "ingest_time": 2**62})
    [dead] = process_raw(out_of_range, location="raw/1/43", now=NOW).dead_letters
    assert (dead["error_type"], dead["location"]) == ("undecodable_message", "raw/1/43")


def test_an_event_too_large_to_send_becomes_a_dead_letter_with_its_record():
    huge = '{"eventID":"big","errorCode":"Client.Huge","errorMessage":"' + "x" * 200_000 + '"}'
    result = process_raw(_raw(['{"eventID":"a"}', huge, '{"eventID":"b"}']), location="raw/0/7", now=NOW)
    encoded, dead = encode_events(result.events, location=result.location, max_bytes=100_000, now=NOW)

    assert [Codec.of("Event").decode(m)["event_id"] for m in encoded] == ["a", "b"]
    [letter] = dead
    assert (letter["error_type"], letter["stage"], letter["source_id"]) == (
        "event_too_large",
        "worker",
        "cloudtrail-111122223333-us-east-1",
    )
    assert "event big is" in letter["reason"] and "more than the worker may send (100000" in letter["reason"]
    assert letter["location"].endswith("f.json.gz#chunk2/event=big")
    assert letter["payload"] == huge.encode()[:65536] and letter["payload_size"] == len(huge)
    Codec.of("DeadLetter").encode(letter)  # and it can be sent
