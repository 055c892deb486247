"""Turn one CloudTrail log file into chunks of original record texts, each chunk below a size limit.

Records are cut out of the file by their exact spans, never re-serialized: the text a downstream consumer sees is
byte for byte what AWS wrote (re-encoding changed 2 of the 2,900 real records in ../shared/data).

The file is read as a stream, whatever its size: gunzipped a piece at a time (`PIECE_BYTES`), decoded, cut into
records with the stdlib's `raw_decode` on a window that holds the unread part of the current piece and at most one
record being completed. Chunks wait in a spool (memory up to `spool_bytes`, then a temporary file) until the whole
file has been read, because every chunk carries the file's chunk count, and because a file that turns out corrupt
near its end must go to the dead-letter topic whole, with nothing of it published. Memory per file is therefore
about 2 x PIECE_BYTES + the largest record + `spool_bytes`, however large the file. No I/O but the file given.
"""

from __future__ import annotations

import codecs
import io
import json
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from tempfile import SpooledTemporaryFile
from typing import IO, overload

from trailhouse.errors import BadLogFile

_GZIP_MAGIC = b"\x1f\x8b"
_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\r\n"
_LENGTH = struct.Struct("<I")

PIECE_BYTES = 1024 * 1024
MAX_RECORD_CHARS = 16 * 1024 * 1024  # a record not complete within this is refused with its file
HEADER_CHARS = 1024 * 1024  # where the "Records" array must start
OVERSIZED_KEPT_BYTES = 64 * 1024  # what a dead letter keeps of a record too large to publish


@dataclass(frozen=True)
class OversizedRecord:
    index: int
    text: str  # its first OVERSIZED_KEPT_BYTES (as UTF-8), for the dead letter
    size: int  # its whole size in bytes


@dataclass
class SplitFile:
    chunks: Sequence[list[str]]
    records: int
    oversized: list[OversizedRecord] = field(default_factory=list)

    def close(self) -> None:
        if isinstance(self.chunks, SpooledChunks):
            self.chunks.close()

    def __enter__(self) -> SplitFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SpooledChunks(Sequence[list[str]]):
    """Chunks of records kept in memory up to `spool_bytes`, then in a temporary file; read back in order."""

    def __init__(self, spool_bytes: int) -> None:
        self._file = SpooledTemporaryFile(max_size=spool_bytes)  # noqa: SIM115 - closed by close()
        self._index: list[tuple[int, int]] = []  # (offset, records) per chunk

    def append(self, encoded: list[bytes]) -> None:
        self._file.seek(0, io.SEEK_END)
        self._index.append((self._file.tell(), len(encoded)))
        self._file.write(b"".join(_LENGTH.pack(len(record)) + record for record in encoded))

    def __len__(self) -> int:
        return len(self._index)

    @overload
    def __getitem__(self, index: int) -> list[str]: ...
    @overload
    def __getitem__(self, index: slice) -> list[list[str]]: ...
    def __getitem__(self, index: int | slice) -> list[str] | list[list[str]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        offset, count = self._index[index]
        end = self._index[index + 1][0] if index + 1 < len(self._index) else None
        self._file.seek(offset)
        data = self._file.read() if end is None else self._file.read(end - offset)
        records, at = [], 0
        for _ in range(count):
            (size,) = _LENGTH.unpack_from(data, at)
            records.append(data[at + _LENGTH.size : at + _LENGTH.size + size].decode("utf-8"))
            at += _LENGTH.size + size
        return records

    def close(self) -> None:
        self._file.close()


# --- bytes -> text ---------------------------------------------------------------------------------------------


def _inflated(body: IO[bytes], max_bytes: int) -> Iterator[bytes]:
    """The file's bytes, gunzipped when they are gzip (by magic, not by name), refusing more than `max_bytes`."""
    data = body.read(max(PIECE_BYTES, len(_GZIP_MAGIC)))
    total = 0

    def count(piece: bytes) -> bytes:
        nonlocal total
        total += len(piece)
        if total > max_bytes:
            raise BadLogFile(
                f"file holds more than max_file_bytes={max_bytes} bytes; raise the limit to read it",
                kind="file_too_large",
            )
        return piece

    if not data.startswith(_GZIP_MAGIC):
        while data:
            yield count(data)
            data = body.read(PIECE_BYTES)
        return
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    while True:
        try:
            out = inflater.decompress(data, PIECE_BYTES)
        except zlib.error as exc:
            raise BadLogFile(f"corrupt gzip: {exc}", kind="corrupt_gzip") from exc
        data = inflater.unconsumed_tail
        if out:
            yield count(out)
        if inflater.eof:
            rest = inflater.unused_data or body.read(PIECE_BYTES)
            if not rest.startswith(_GZIP_MAGIC):
                return  # the last member ended; anything after it that is not gzip is ignored, as gzip(1) does
            inflater, data = zlib.decompressobj(zlib.MAX_WBITS | 16), rest  # concatenated members are legal gzip
        elif not data and len(out) < PIECE_BYTES:
            data = body.read(PIECE_BYTES)
            if not data:
                raise BadLogFile("corrupt gzip: the compressed stream is truncated", kind="corrupt_gzip")


def _decoded(pieces: Iterator[bytes]) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    try:
        for piece in pieces:
            text = decoder.decode(piece)
            offset += len(piece)
            if text:
                yield text
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise BadLogFile(
            f"not UTF-8 text near byte {offset + exc.start}: not a CloudTrail log file", kind="not_utf8"
        ) from exc


class _Window:
    """The unread part of a text stream: `buf[i:]`, extended a piece at a time on demand."""

    def __init__(self, pieces: Iterator[str]) -> None:
        self._pieces = pieces
        self.buf = ""
        self.i = 0
        self.dropped = 0  # characters before buf[0], for positions in messages
        self.eof = False

    def more(self) -> bool:
        piece = next(self._pieces, None)
        if piece is None:
            self.eof = True
            return False
        self.dropped += self.i
        self.buf, self.i = self.buf[self.i :] + piece, 0
        return True

    def drain(self) -> None:
        """Read the rest of the stream (what follows the Records array), so a truncated gzip is still noticed."""
        for _ in self._pieces:
            pass

    def next_char(self) -> str:
        """The next character that is not whitespace ('' at the end of the text), without consuming it."""
        while True:
            self.i = _skip_whitespace(self.buf, self.i)
            if self.i < len(self.buf):
                return self.buf[self.i]
            if not self.more():
                return ""


def iter_records(body: IO[bytes], *, max_file_bytes: int) -> Iterator[str]:
    """The exact JSON text of every element of the file's top-level "Records" array, in order, read as a stream.

    Raises `BadLogFile` (with its `kind`) for anything that is not a CloudTrail log file.
    """
    window = _Window(_decoded(_inflated(body, max_file_bytes)))
    _find_records_array(window)
    index = 0
    while True:
        char = window.next_char()
        if char == "]":
            window.drain()
            return
        if char == "":
            raise BadLogFile(
                f"not valid JSON: the file ends inside the Records array, at record {index}", kind="not_json"
            )
        yield _next_record(window, index)
        index += 1
        char = window.next_char()
        if char == ",":
            window.i += 1
        elif char == "]":
            window.drain()
            return
        else:
            at = window.dropped + window.i
            raise BadLogFile(
                f"not valid JSON after record {index - 1}: expected ',' or ']' at character {at}", kind="not_json"
            )


def _find_records_array(window: _Window) -> None:
    while True:
        try:
            window.i = _records_array_start(window.buf)
            return
        except BadLogFile:
            if len(window.buf) > HEADER_CHARS or not window.more():
                raise


def _next_record(window: _Window, index: int) -> str:
    while True:
        try:
            _, end = _DECODER.raw_decode(window.buf, window.i)
        except json.JSONDecodeError as exc:
            if len(window.buf) - window.i > MAX_RECORD_CHARS:
                raise BadLogFile(
                    f"record {index} is not complete within {MAX_RECORD_CHARS} characters: too large to read, or "
                    "not valid JSON",
                    kind="record_too_large",
                ) from exc
            if window.more():
                continue
            raise BadLogFile(
                f"not valid JSON in record {index}: {exc.msg} at character {window.dropped + exc.pos}", kind="not_json"
            ) from exc
        # A number or literal that ends the window may go on in the next piece: read further and decode again.
        if end == len(window.buf) and window.buf[window.i] not in '{["' and window.more():
            continue
        text = window.buf[window.i : end]
        window.i = end
        return text


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


# --- records -> chunks -----------------------------------------------------------------------------------------


class _Chunker:
    """Groups records, in order, into chunks whose UTF-8 size stays within a budget; sets aside the records that
    alone are over it. The budget leaves room for the Avro and Kafka framing."""

    def __init__(self, max_chunk_bytes: int, spool: SpooledChunks | None) -> None:
        self.budget = max_chunk_bytes - 4096
        self.spool = spool
        self.chunks: list[list[str]] = []
        self.oversized: list[OversizedRecord] = []
        self.records = 0
        self._texts: list[str] = []
        self._encoded: list[bytes] = []
        self._size = 0
        self._count = 0

    def add(self, index: int, record: str) -> None:
        encoded = record.encode("utf-8")
        size = len(encoded) + 5  # + Avro length prefix
        if size > self.budget:
            kept = encoded[:OVERSIZED_KEPT_BYTES].decode("utf-8", errors="ignore")
            self.oversized.append(OversizedRecord(index, kept, len(encoded)))
            return
        if self._count and self._size + size > self.budget:
            self._close_chunk()
        self.records += 1
        self._count += 1
        self._size += size
        if self.spool is None:
            self._texts.append(record)
        else:
            self._encoded.append(encoded)

    def _close_chunk(self) -> None:
        if self.spool is None:
            self.chunks.append(self._texts)
        else:
            self.spool.append(self._encoded)
        self._texts, self._encoded, self._size, self._count = [], [], 0, 0

    def finish(self) -> SplitFile:
        produced = len(self.chunks) if self.spool is None else len(self.spool)
        if self._count or not produced:
            self._close_chunk()
        chunks: Sequence[list[str]] = self.chunks if self.spool is None else self.spool
        return SplitFile(chunks=chunks, records=self.records, oversized=self.oversized)


def chunk_records(records: list[str], *, max_chunk_bytes: int) -> SplitFile:
    """Group records, in order, into chunks whose UTF-8 size stays within `max_chunk_bytes`.

    A record that alone is over the limit cannot be published; it is returned in `oversized` (for the dead-letter
    topic) and the others are chunked without it.
    """
    chunker = _Chunker(max_chunk_bytes, None)
    for index, record in enumerate(records):
        chunker.add(index, record)
    return chunker.finish()


def split_stream(body: IO[bytes], *, max_chunk_bytes: int, max_file_bytes: int, spool_bytes: int) -> SplitFile:
    """A (gzipped) CloudTrail log file, read as a stream -> chunks of original record texts, spooled. Raises
    `BadLogFile`; close the result (or use it as a context manager) to free its spool."""
    spool = SpooledChunks(spool_bytes)
    try:
        chunker = _Chunker(max_chunk_bytes, spool)
        for index, record in enumerate(iter_records(body, max_file_bytes=max_file_bytes)):
            chunker.add(index, record)
        return chunker.finish()
    except BaseException:
        spool.close()
        raise


def split_log_file(data: bytes, *, max_chunk_bytes: int, max_file_bytes: int) -> SplitFile:
    """Bytes of a (gzipped) CloudTrail log file -> chunks (lists) of original record texts. Raises `BadLogFile`."""
    return chunk_records(record_texts(data, max_bytes=max_file_bytes), max_chunk_bytes=max_chunk_bytes)


def record_texts(document: bytes, *, max_bytes: int = 1 << 62) -> list[str]:
    """The exact JSON text of every element of the top-level "Records" array of a file's bytes, in order."""
    return list(iter_records(io.BytesIO(document), max_file_bytes=max_bytes))


def decompress(data: bytes, *, max_bytes: int) -> bytes:
    """Gunzip when the bytes are gzip (by magic, not by name), refusing more than `max_bytes` uncompressed."""
    return b"".join(_inflated(io.BytesIO(data), max_bytes))
