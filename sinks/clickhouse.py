"""The ClickHouse connection: one code path for a ClickHouse server (http/https) and embedded chDB (chdb://).

ClickHouse errors are translated here, once, from their numeric codes into `ClickHouseUnavailable` (retry may
help: network, overload, too many parts) or `ClickHouseRejected` (the statement or data is wrong). A rejection
says whether it is about the rows (`about_rows`: a constraint, a value out of range; the sink dead-letters those
rows) or about the statement (a missing table or column, no permission; nothing in the data can fix it).
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from trailhouse.errors import ClickHouseUnavailable, DataDirInUse, TerminalError

T = TypeVar("T")
log = logging.getLogger(__name__)

# Server error codes after which the same request can succeed later.
_TRANSIENT_CODES = {
    159,  # TIMEOUT_EXCEEDED
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    252,  # TOO_MANY_PARTS
    319,  # UNKNOWN_STATUS_OF_INSERT
    425,  # SYSTEM_ERROR
    999,  # KEEPER_EXCEPTION
}


_STD_EXCEPTION = 1001  # an exception of a library inside ClickHouse (the Avro reader's on a record it cannot read)

# Server error codes that blame the data of an insert rather than the statement.
_ROW_CODES = {
    6,  # CANNOT_PARSE_TEXT
    27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    41,  # CANNOT_PARSE_DATETIME
    53,  # TYPE_MISMATCH
    69,  # ARGUMENT_OUT_OF_BOUND
    70,  # CANNOT_CONVERT_TYPE
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    469,  # VIOLATED_CONSTRAINT
}


class ClickHouseRejected(TerminalError):
    """ClickHouse refused a statement or its data; sending it again will fail the same way."""

    def __init__(self, message: str, code: int | None, *, about_rows: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.about_rows = about_rows


def translate(exc: ClickHouseError, action: str) -> Exception:
    if isinstance(exc, OperationalError):
        return ClickHouseUnavailable(f"ClickHouse did not answer while trying to {action}: {exc}", retry_after=2.0)
    code = getattr(exc, "code", None)
    if code in _TRANSIENT_CODES:
        return ClickHouseUnavailable(f"ClickHouse is busy ({action}): {_first_line(exc)}", retry_after=5.0)
    message = f"ClickHouse refused to {action}: {_first_line(exc)}"
    return ClickHouseRejected(message, code, about_rows=code in _ROW_CODES)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def call(action: str, fn: Callable[[], T]) -> T:
    """Run one ClickHouse call, translating its errors."""
    try:
        return fn()
    except ClickHouseError as exc:
        raise translate(exc, action) from exc


def connect(dsn: str) -> Client:
    """A client for `dsn` (http[s]://user:password@host:port or chdb:///path)."""
    try:
        if dsn.startswith("chdb://"):
            return clickhouse_connect.get_client(dsn=dsn)
        # No session: sessions serialize queries, and the sink and searches may share one client.
        return clickhouse_connect.get_client(dsn=dsn, autogenerate_session_id=False)
    except OperationalError as exc:
        raise ClickHouseUnavailable(f"cannot reach ClickHouse at {_redacted(dsn)}: {_first_line(exc)}") from exc
    except ClickHouseError as exc:
        if dsn.startswith("chdb://"):
            raise DataDirInUse(
                f"the embedded ClickHouse at {dsn.removeprefix('chdb://')} is open in another process "
                "(a running `trailhouse run` or sink): stop it first, or run a ClickHouse server and pass "
                f"--clickhouse-url ({_first_line(exc)})"
            ) from exc
        raise translate(exc, "connect") from exc


def release_memory(client: Client) -> None:
    """Give the embedded engine's freed memory back to the OS now; call it only on a chdb:// client.

    chDB's jemalloc keeps freed pages resident for 5 s (`dirty_decay_ms`) in each CPU's arena, so back-to-back
    inserts on two CPUs kept ~100-250 MB of the sink's resident memory that nothing used (measured 2026-11-24,
    NOTES.md). A server manages its own memory, and this statement needs the SYSTEM JEMALLOC privilege there.
    Failing is harmless: the pages are still released after the decay.
    """
    try:
        client.command("SYSTEM JEMALLOC PURGE")
    except ClickHouseError as exc:
        log.debug("could not purge the embedded engine's freed memory: %s", _first_line(exc))


def utc(value: Any) -> Any:
    """Datetimes read back are naive (in UTC, as every trailhouse column is): make them say so."""
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


def _redacted(dsn: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", dsn)


def insert(
    client: Client,
    table: str,
    columns: Sequence[str],
    data: Sequence[Sequence[Any]],
    *,
    dedup_token: str | None = None,
    settings: dict[str, Any] | None = None,
) -> None:
    """Insert column-oriented `data`; a repeated `dedup_token` makes ClickHouse skip an insert it already has.

    A value the client cannot encode for its column is a rejection of the rows, like one the server refuses.
    """
    options: dict[str, Any] = dict(settings or {})
    if dedup_token:
        options["insert_deduplication_token"] = dedup_token
    try:
        call(
            f"insert into {table}",
            lambda: client.insert(table, data, column_names=list(columns), column_oriented=True, settings=options),
        )
    except (TypeError, ValueError, OverflowError, struct.error) as exc:
        raise ClickHouseRejected(f"cannot encode rows for {table}: {exc}", None, about_rows=True) from exc


def insert_avro(
    client: Client,
    table: str,
    columns: Sequence[str],
    container: bytes,
    *,
    dedup_token: str | None = None,
    settings: dict[str, Any] | None = None,
) -> None:
    """Insert an Avro object container file (`Codec.container`): ClickHouse reads the records itself, by field
    name into `columns`, much faster than records decoded and sent column by column from Python.

    A record the Avro reader cannot read (ClickHouse reports the Avro library's exception as STD_EXCEPTION) is a
    rejection of the rows, like a value a column refuses.
    """
    options: dict[str, Any] = {"input_format_null_as_default": 1} | dict(settings or {})  # null -> '' in String
    if dedup_token:
        options["insert_deduplication_token"] = dedup_token
    try:
        client.raw_insert(table, list(columns), insert_block=container, settings=options, fmt="Avro")
    except ClickHouseError as exc:
        translated = translate(exc, f"insert into {table}")
        if isinstance(translated, ClickHouseRejected) and translated.code == _STD_EXCEPTION:
            translated.about_rows = True
        raise translated from exc


__all__ = [
    "Client",
    "ClickHouseRejected",
    "call",
    "connect",
    "insert",
    "insert_avro",
    "release_memory",
    "translate",
    "utc",
]
