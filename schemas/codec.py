"""The one Avro codec of every trailhouse topic: Avro single-object encoding.

Each message is `C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's canonical form,
then the Avro binary body. Any consumer holding `schemas/*.avsc` can decode it without a schema registry, and a
message written by an older schema version is read through Avro schema resolution into the current one, as long
as versions only add fields with defaults (see schemas/README.md).
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro import writer as avro_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.encoder import compile_writer
from trailhouse.errors import TerminalError

MAGIC = b"\xc3\x01"
_HEADER = struct.Struct("<2s8s")
SCHEMA_DIR = Path(__file__).parent


class UndecodableMessage(TerminalError):
    """A message is not Avro single-object encoded with a schema trailhouse knows."""


def _fingerprint(parsed: dict[str, Any]) -> bytes:
    # fastavro renders CRC-64-AVRO as little-endian hex, the byte order the single-object header stores.
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


class Codec:
    """Encoder/decoder of one record type, e.g. `Codec.of("RawBatch")`. Instances are cached and thread-safe."""

    def __init__(self, schema: dict[str, Any], history: list[dict[str, Any]]) -> None:
        self.name: str = schema["name"]
        self.schema = schema
        self.fingerprint = _fingerprint(schema)
        self._writers = {self.fingerprint: schema} | {_fingerprint(old): old for old in history}
        self._container_headers: dict[bytes, bytes] = {}
        self._compiled = compile_writer(schema, prefix=MAGIC + self.fingerprint)  # None: fastavro (encoder.py)

    @staticmethod
    @cache
    def of(name: str) -> Codec:
        path = SCHEMA_DIR / f"{_file_stem(name)}.avsc"
        if not path.exists():
            raise KeyError(f"no Avro schema {name} in {SCHEMA_DIR}")
        history_dir = SCHEMA_DIR / "history"
        history = [
            parse_schema(json.loads(p.read_text())) for p in sorted(history_dir.glob(f"{_file_stem(name)}.v*.avsc"))
        ]
        return Codec(parse_schema(json.loads(path.read_text())), history)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        if self._compiled is not None:
            return self._compiled(record)
        out = io.BytesIO()
        out.write(MAGIC)
        out.write(self.fingerprint)
        schemaless_writer(out, self.schema, record)
        return out.getvalue()

    def writer_of(self, data: bytes) -> bytes:
        """The fingerprint of the schema a message was written with, once its header is checked (not its body)."""
        if len(data) < _HEADER.size or data[:2] != MAGIC:
            raise UndecodableMessage(f"not an Avro single-object message for {self.name} (first bytes {data[:10]!r})")
        if data[2:10] not in self._writers:
            raise UndecodableMessage(
                f"{self.name} message written with an unknown schema (fingerprint {data[2:10].hex()}); "
                "it was produced by a newer trailhouse or another program: upgrade this consumer"
            )
        return data[2:10]

    def fields_of(self, writer: bytes) -> list[str]:
        """The field names of a writer schema (by its fingerprint)."""
        return [f["name"] for f in self._writers[writer]["fields"]]

    def container(self, messages: Sequence[bytes]) -> bytes:
        """An Avro object container file holding the bodies of `messages`, all written with one schema: what
        ClickHouse's `FORMAT Avro` reads, so a consumer can hand a batch over without decoding it. Each body is
        taken as its header says; a body that is not a valid record makes the reader of the file fail."""
        writer = self.writer_of(messages[0])
        header = self._container_headers.get(writer)
        if header is None:
            out = io.BytesIO()
            avro_writer(out, self._writers[writer], [])  # the file header alone: schema, codec null, sync marker
            header = self._container_headers[writer] = out.getvalue()
        body = b"".join(m[_HEADER.size :] for m in messages)
        sync = header[-16:]
        return b"".join((header, _zigzag(len(messages)), _zigzag(len(body)), body, sync))

    def decode(self, data: bytes) -> dict[str, Any]:
        writer = self._writers[self.writer_of(data)]
        try:
            return schemaless_reader(io.BytesIO(data[10:]), writer, self.schema)  # type: ignore[return-value]
        except (EOFError, ValueError, IndexError, UnicodeDecodeError, OverflowError) as exc:
            raise UndecodableMessage(f"corrupt {self.name} message body: {exc}") from exc


def _zigzag(n: int) -> bytes:
    """An Avro long: zig-zag, then base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _file_stem(name: str) -> str:
    """RawBatch -> raw_batch: schema files are named after their record in snake case."""
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
