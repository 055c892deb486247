import io
import json
from datetime import UTC, datetime

import fastavro
import pytest
from fastavro import parse_schema

from schemas import Codec, UndecodableMessage
from schemas.codec import SCHEMA_DIR

RECORD = {
    "source_id": "s",
    "stage": "poll",
    "reason": "r",
    "error_type": "k",
    "location": "l",
    "time": datetime(2026, 1, 1, tzinfo=UTC),
    "payload": b"\x00\x01",
    "payload_size": 2,
}


def test_messages_are_single_object_encoded():
    codec = Codec.of("DeadLetter")
    data = codec.encode(RECORD)
    assert data[:2] == b"\xc3\x01" and data[2:10] == codec.fingerprint
    assert codec.decode(data) == RECORD


@pytest.mark.parametrize("name", ["RawBatch", "Event", "DeadLetter", "SourceConfig", "Checkpoint"])
def test_every_schema_parses_and_documents_its_fields(name):
    schema = Codec.of(name).schema
    assert schema["doc"]
    assert all(f.get("doc") for f in schema["fields"])


def test_garbage_and_unknown_schemas_are_refused_with_a_reason():
    codec = Codec.of("DeadLetter")
    with pytest.raises(UndecodableMessage, match="not an Avro single-object"):
        codec.decode(b"plain text")
    with pytest.raises(UndecodableMessage, match="unknown schema"):
        codec.decode(b"\xc3\x01" + b"\x00" * 8 + b"body")
    with pytest.raises(UndecodableMessage, match="corrupt"):
        codec.decode(codec.encode(RECORD)[:12])
    # a timestamp no datetime can hold (a foreign or buggy producer): refused too, not an OverflowError
    with pytest.raises(UndecodableMessage, match="corrupt"):
        codec.decode(codec.encode({**RECORD, "time": 2**62}))


def test_a_message_of_an_older_schema_version_is_read_into_the_current_one():
    current = json.loads((SCHEMA_DIR / "checkpoint.avsc").read_text())
    older = dict(current, fields=[f for f in current["fields"] if f["name"] != "last_error"])
    old_codec = Codec(parse_schema(older), [])
    new_codec = Codec(parse_schema(current), [parse_schema(older)])
    old_message = old_codec.encode(
        {
            "source_id": "s",
            "last_key": "k",
            "files": 1,
            "records": 2,
            "last_poll_time": datetime(2026, 1, 1, tzinfo=UTC),
        }
    )
    assert new_codec.decode(old_message)["last_error"] is None


def test_a_container_file_of_messages_reads_back_as_their_records_in_order():
    codec = Codec.of("DeadLetter")
    records = [RECORD | {"reason": f"r{i}", "payload": bytes([i % 256]) * i, "payload_size": i} for i in range(300)]
    container = codec.container([codec.encode(r) for r in records])
    assert list(fastavro.reader(io.BytesIO(container))) == records
    with pytest.raises(UndecodableMessage, match="unknown schema"):
        codec.container([b"\xc3\x01" + b"\x00" * 8 + b"body"])
