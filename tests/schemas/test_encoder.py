"""The compiled Avro writer against fastavro's: the same bytes for every schema, and the same refusals."""

import io
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import orjson
import pytest
from fastavro import parse_schema

from schemas import Codec
from schemas.codec import SCHEMA_DIR
from schemas.encoder import compile_writer
from streams.enrich import enrich
from tests.streams.test_enrich import CTX

SCHEMAS = sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc"))
STRINGS = ["", "a", "ü€😀", "x" * 70, "y" * 9000, "arn:aws:iam::123456789012:role/Admin"]
LONGS = [0, 1, -1, 63, 64, -64, -65, 8191, 8192, 2**31 - 1, -(2**31), 2**62, 2**63 - 1, -(2**63)]


def fastavro_bytes(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def sample(schema: Any, rng: random.Random) -> Any:
    """A random datum of `schema`, edge values included (None branches, empty arrays, multi-byte lengths)."""
    if isinstance(schema, list):
        return sample(rng.choice(schema), rng)
    kind = schema if isinstance(schema, str) else schema["type"]
    if isinstance(kind, dict | list):
        return sample(kind, rng)
    if not isinstance(schema, str) and schema.get("logicalType") == "timestamp-millis":
        moment = datetime(2026, 11, 24, tzinfo=UTC) + timedelta(milliseconds=rng.randrange(-(10**12), 10**12))
        return moment if rng.random() < 0.5 else int(moment.timestamp() * 1000)
    return {
        "null": lambda: None,
        "boolean": lambda: rng.random() < 0.5,
        "int": lambda: rng.choice([v for v in LONGS if -(2**31) <= v < 2**31]),
        "long": lambda: rng.choice(LONGS),
        "double": lambda: rng.choice([0.0, -1.5, 1e300, 0.1, 42]),
        "string": lambda: rng.choice(STRINGS),
        "bytes": lambda: rng.randbytes(rng.choice([0, 1, 200, 9000])),
        "array": lambda: [sample(schema["items"], rng) for _ in range(rng.choice([0, 1, 3, 70]))],
        "map": lambda: {f"k{i}": sample(schema["values"], rng) for i in range(rng.choice([0, 2]))},
        "record": lambda: {f["name"]: sample(f["type"], rng) for f in schema["fields"]},
    }[kind]()


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_schema_is_compiled_and_writes_what_fastavro_writes(name):
    schema = parse_schema(json.loads((SCHEMA_DIR / f"{name}.avsc").read_text()))
    encode = compile_writer(schema)
    assert encode is not None, f"{name} uses a type the encoder does not compile"
    rng = random.Random(name)
    for _ in range(300):
        record = sample(schema, rng)
        assert encode(record) == fastavro_bytes(schema, record), record


def test_the_events_of_the_real_cloudtrail_files_are_written_as_fastavro_writes_them(real_records):
    codec = Codec.of("Event")
    events = [enrich(orjson.dumps(r).decode(), CTX) for r in real_records]
    assert len(events) > 1000
    for event in events:
        message = codec.encode(event)
        assert message[10:] == fastavro_bytes(codec.schema, event)
        assert codec.decode(message)["record"] == event["record"]


def test_a_field_missing_takes_its_default_and_a_wrong_type_is_refused_with_the_field_named():
    schema = parse_schema(
        {
            "type": "record",
            "name": "R",
            "fields": [
                {"name": "a", "type": ["null", "string"], "default": None},
                {"name": "b", "type": {"type": "array", "items": "string"}, "default": []},
                {"name": "n", "type": "int"},
            ],
        }
    )
    encode = compile_writer(schema)
    assert encode({"n": 5}) == fastavro_bytes(schema, {"n": 5})
    for bad, field in (({"n": "5"}, "R.n"), ({"n": 2**31}, "R.n"), ({"n": 1, "a": 7}, "R.a"), ({}, "R.n")):
        with pytest.raises(ValueError, match=field):
            encode(bad)
    with pytest.raises((ValueError, TypeError)):
        fastavro_bytes(schema, {"n": "5"})


def test_a_schema_with_a_type_not_compiled_falls_back_to_fastavro():
    schema = parse_schema(
        {
            "type": "record",
            "name": "E",
            "fields": [{"name": "e", "type": {"type": "enum", "name": "C", "symbols": ["A"]}}],
        }
    )
    assert compile_writer(schema) is None
    three_way = parse_schema(
        {"type": "record", "name": "U", "fields": [{"name": "u", "type": ["null", "int", "string"]}]}
    )
    assert compile_writer(three_way) is None
