"""Avro binary encoding compiled once per schema: a writer per field, specialised on its type. Pure, no I/O.

fastavro's `schemaless_writer` resolves every union by validating the datum against each branch, ~1.5 µs per
union field: the `Event` schema has 25 of them, and encoding took ~30 µs per event, a fifth of the worker's time
end to end (bench, issue 7). Compiled here, a `["null", "string"]` field is a test for None and a string write.
The bytes are the ones fastavro writes (tests/schemas/test_encoder.py compares both on every schema and the real
CloudTrail files), and a datum of the wrong type is refused with the field's name, as fastavro refuses it.

Only the types trailhouse's schemas use are compiled: null, boolean, int, long, double, string, bytes, records,
arrays, maps, unions of null and one other type, and timestamp-millis. `compile_writer` returns None for a schema
with anything else, and the codec then uses fastavro.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from fastavro.write import LOGICAL_WRITERS

Write = Callable[[Any, list[bytes]], None]  # appends the encoding of a datum to a list of parts

_INT_RANGE = range(-(2**31), 2**31)
_LONG_RANGE = range(-(2**63), 2**63)
_DOUBLE = struct.Struct("<d").pack
_TIMESTAMP_MILLIS = LOGICAL_WRITERS["long-timestamp-millis"]  # datetime -> ms, as fastavro converts it


class Unsupported(Exception):
    """A schema uses a type this module does not compile."""


def _varint(zigzagged: int) -> bytes:
    out = bytearray()
    while zigzagged > 0x7F:
        out.append((zigzagged & 0x7F) | 0x80)
        zigzagged >>= 7
    out.append(zigzagged)
    return bytes(out)


_LENGTHS = [_varint(n << 1) for n in range(8192)]  # the zigzag varint of every length up to 8 KiB, computed once


def _long_bytes(n: int) -> bytes:
    if 0 <= n < len(_LENGTHS):
        return _LENGTHS[n]
    return _varint((n << 1) ^ (n >> 63))


def _write_long(datum: Any, parts: list[bytes]) -> None:
    if type(datum) is not int or datum not in _LONG_RANGE:  # bool is not a long
        raise ValueError(f"{datum!r} is not a long")
    parts.append(_long_bytes(datum))


def _write_int(datum: Any, parts: list[bytes]) -> None:
    if type(datum) is not int or datum not in _INT_RANGE:
        raise ValueError(f"{datum!r} is not an int")
    parts.append(_long_bytes(datum))


def _write_timestamp_millis(datum: Any, parts: list[bytes]) -> None:
    _write_long(_TIMESTAMP_MILLIS(datum, None), parts)


def _write_string(datum: Any, parts: list[bytes]) -> None:
    if type(datum) is not str:
        raise ValueError(f"{type(datum).__name__} {datum!r:.80} is not a string")
    encoded = datum.encode()
    size = len(encoded)
    parts.append(_LENGTHS[size] if size < 8192 else _long_bytes(size))
    parts.append(encoded)


def _write_bytes(datum: Any, parts: list[bytes]) -> None:
    if not isinstance(datum, bytes | bytearray):
        raise ValueError(f"{type(datum).__name__} is not bytes")
    parts.append(_long_bytes(len(datum)))
    parts.append(bytes(datum))


def _write_boolean(datum: Any, parts: list[bytes]) -> None:
    if type(datum) is not bool:
        raise ValueError(f"{datum!r} is not a boolean")
    parts.append(b"\x01" if datum else b"\x00")


def _write_double(datum: Any, parts: list[bytes]) -> None:
    if type(datum) not in (float, int):
        raise ValueError(f"{datum!r} is not a double")
    parts.append(_DOUBLE(datum))


def _write_null(datum: Any, parts: list[bytes]) -> None:
    if datum is not None:
        raise ValueError(f"{datum!r} is not null")


_PRIMITIVES: dict[str, Write] = {
    "null": _write_null,
    "boolean": _write_boolean,
    "int": _write_int,
    "long": _write_long,
    "double": _write_double,
    "string": _write_string,
    "bytes": _write_bytes,
}


def _writer_of(schema: Any) -> Write:
    if isinstance(schema, str):
        if schema not in _PRIMITIVES:
            raise Unsupported(schema)
        return _PRIMITIVES[schema]
    if isinstance(schema, list):
        return _union(schema)
    kind = schema["type"]
    logical = schema.get("logicalType")
    if logical is not None:
        if (kind, logical) != ("long", "timestamp-millis"):
            raise Unsupported(f"{kind}/{logical}")
        return _write_timestamp_millis
    if kind == "record":
        return _record(schema)
    if kind == "array":
        return _array(_writer_of(schema["items"]))
    if kind == "map":
        return _map(_writer_of(schema["values"]))
    return _writer_of(kind)  # {"type": "string"}


def _union(branches: list[Any]) -> Write:
    if len(branches) != 2 or "null" not in branches:
        raise Unsupported(f"union {branches}")
    null_index = branches.index("null")
    other = _writer_of(branches[1 - null_index])
    null_tag, other_tag = _long_bytes(null_index), _long_bytes(1 - null_index)
    if other is _write_string:  # most of the Event's fields: one call instead of two

        def write_string(datum: Any, parts: list[bytes]) -> None:
            if datum is None:
                parts.append(null_tag)
            elif type(datum) is str:
                encoded = datum.encode()
                size = len(encoded)
                parts.append(other_tag)
                parts.append(_LENGTHS[size] if size < 8192 else _long_bytes(size))
                parts.append(encoded)
            else:
                _write_string(datum, parts)  # raises

        return write_string

    def write(datum: Any, parts: list[bytes]) -> None:
        if datum is None:
            parts.append(null_tag)
        else:
            parts.append(other_tag)
            other(datum, parts)

    return write


def _array(item: Write) -> Write:
    def write(datum: Any, parts: list[bytes]) -> None:
        if not isinstance(datum, list | tuple):
            raise ValueError(f"{type(datum).__name__} is not an array")
        if datum:
            parts.append(_long_bytes(len(datum)))
            for value in datum:
                item(value, parts)
        parts.append(b"\x00")

    return write


def _map(value_writer: Write) -> Write:
    def write(datum: Any, parts: list[bytes]) -> None:
        if not isinstance(datum, Mapping):
            raise ValueError(f"{type(datum).__name__} is not a map")
        if datum:
            parts.append(_long_bytes(len(datum)))
            for key, value in datum.items():
                _write_string(key, parts)
                value_writer(value, parts)
        parts.append(b"\x00")

    return write


def _record(schema: Mapping[str, Any]) -> Write:
    fields = [(f["name"], f.get("default"), _writer_of(f["type"])) for f in schema["fields"]]
    name = schema["name"]

    def write(datum: Any, parts: list[bytes]) -> None:
        for field, default, write_field in fields:
            try:
                write_field(datum.get(field, default), parts)
            except (ValueError, TypeError, AttributeError, OverflowError) as exc:
                raise ValueError(f"{name}.{field}: {exc}") from None

    return write


def compile_writer(schema: Mapping[str, Any], prefix: bytes = b"") -> Callable[[Mapping[str, Any]], bytes] | None:
    """A function from a record to `prefix` + its Avro binary encoding; None when the schema uses a type not
    compiled here. Raises ValueError naming the field when a datum does not fit its type."""
    try:
        write = _writer_of(schema)
    except Unsupported:
        return None

    def encode(record: Mapping[str, Any]) -> bytes:
        parts = [prefix]
        write(record, parts)
        return b"".join(parts)

    return encode
