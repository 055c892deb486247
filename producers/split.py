"""Turn one CloudTrail log file's bytes into chunks of original record texts, each chunk below a size limit.

Records are cut out of the file by their exact spans, never re-serialized: the text a downstream consumer sees is
byte for byte what AWS wrote (re-encoding changed 2 of the 2,900 real records in ../shared/data). Pure functions,
no I/O: the poller reads the bytes and publishes the chunks.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field

from trailhouse.errors import BadLogFile

_GZIP_MAGIC = b"\x1f\x8b"
_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\r\n"


@dataclass(frozen=True)
class OversizedRecord:
    index: int
    text: str
    size: int


@dataclass
class SplitFile:
    chunks: list[list[str]]
    records: int
    oversized: list[OversizedRecord] = field(default_factory=list)


def decompress(data: bytes, *, max_bytes: int) -> bytes:
    """Gunzip when the bytes are gzip (by magic, not by name), refusing more than `max_bytes` uncompressed."""
    if not data.startswith(_GZIP_MAGIC):
        if len(data) > max_bytes:
            raise BadLogFile(
                f"file is {len(data)} bytes, above the limit max_file_bytes={max_bytes}", kind="file_too_large"
            )
        return data
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise BadLogFile(f"corrupt gzip: {exc}", kind="corrupt_gzip") from exc
    if len(out) > max_bytes:
        raise BadLogFile(
            f"file inflates to more than max_file_bytes={max_bytes} bytes; raise the limit to read it",
            kind="file_too_large",
        )
    if not inflater.eof:
        raise BadLogFile("corrupt gzip: the compressed stream is truncated", kind="corrupt_gzip")
    if inflater.unused_data.startswith(_GZIP_MAGIC):
        # Concatenated gzip members are legal gzip; rare enough to take the simple path.
        return gzip.decompress(data)
    return out


def record_texts(document: bytes) -> list[str]:
    """The exact JSON text of every element of the top-level "Records" array, in order."""
    try:
        text = document.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadLogFile(f"not UTF-8 text at byte {exc.start}: not a CloudTrail log file", kind="not_utf8") from exc
    start = _records_array_start(text)
    records: list[str] = []
    i, n = start, len(text)
    while True:
        i = _skip_whitespace(text, i)
        if i < n and text[i] == "]":
            break
        try:
            _, end = _DECODER.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise BadLogFile(
                f"not valid JSON in record {len(records)}: {exc.msg} at character {exc.pos}", kind="not_json"
            ) from exc
        records.append(text[i:end])
        i = _skip_whitespace(text, end)
        if i < n and text[i] == ",":
            i += 1
        elif i >= n or text[i] != "]":
            raise BadLogFile(
                f"not valid JSON after record {len(records) - 1}: expected ',' or ']' at character {i}",
                kind="not_json",
            )
    return records


def _records_array_start(text: str) -> int:
    """Index just after the '[' of the top-level Records array (AWS writes it first; other keys are skipped)."""
    i = _skip_whitespace(text, 0)
    if i >= len(text) or text[i] != "{":
        raise BadLogFile('not a JSON object: a CloudTrail log file is {"Records": [...]}', kind="not_json")
    i += 1
    while True:
        i = _skip_whitespace(text, i)
        if i < len(text) and text[i] == "}":
            raise BadLogFile('JSON without a "Records" array: not a CloudTrail log file', kind="no_records")
        try:
            key, i = _DECODER.raw_decode(text, i)
            i = _skip_whitespace(text, i)
            if not isinstance(key, str) or text[i : i + 1] != ":":
                raise json.JSONDecodeError("expected a key and ':'", text, i)
            i = _skip_whitespace(text, i + 1)
            if key == "Records":
                if text[i : i + 1] != "[":
                    raise BadLogFile('"Records" is not an array: not a CloudTrail log file', kind="no_records")
                return i + 1
            _, i = _DECODER.raw_decode(text, i)
            i = _skip_whitespace(text, i)
            if text[i : i + 1] == ",":
                i += 1
        except json.JSONDecodeError as exc:
            raise BadLogFile(f"not valid JSON: {exc.msg} at character {exc.pos}", kind="not_json") from exc


def _skip_whitespace(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _WHITESPACE:
        i += 1
    return i


def chunk_records(records: list[str], *, max_chunk_bytes: int) -> SplitFile:
    """Group records, in order, into chunks whose UTF-8 size stays within `max_chunk_bytes`.

    A record that alone is over the limit cannot be published; it is returned in `oversized` (for the dead-letter
    topic) and the others are chunked without it. The budget leaves room for the Avro and Kafka framing.
    """
    budget = max_chunk_bytes - 4096
    chunks: list[list[str]] = []
    oversized: list[OversizedRecord] = []
    current: list[str] = []
    size = 0
    for index, record in enumerate(records):
        record_size = len(record.encode("utf-8")) + 5  # + Avro length prefix
        if record_size > budget:
            oversized.append(OversizedRecord(index, record, record_size - 5))
            continue
        if current and size + record_size > budget:
            chunks.append(current)
            current, size = [], 0
        current.append(record)
        size += record_size
    if current or not chunks:
        chunks.append(current)
    return SplitFile(chunks=chunks, records=len(records) - len(oversized), oversized=oversized)


def split_log_file(data: bytes, *, max_chunk_bytes: int, max_file_bytes: int) -> SplitFile:
    """Bytes of a (gzipped) CloudTrail log file -> chunks of original record texts. Raises `BadLogFile`."""
    return chunk_records(record_texts(decompress(data, max_bytes=max_file_bytes)), max_chunk_bytes=max_chunk_bytes)
