"""The ClickHouse connection: one code path for a ClickHouse server (http/https) and embedded chDB (chdb://).

ClickHouse errors are translated here, once, from their numeric codes into `ClickHouseUnavailable` (retry may
help: network, overload, too many parts) or `ClickHouseRejected` (the statement or data is wrong).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from trailhouse.errors import ClickHouseUnavailable, DataDirInUse, TerminalError

T = TypeVar("T")

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


class ClickHouseRejected(TerminalError):
    """ClickHouse refused a statement or its data; sending it again will fail the same way."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.code = code


def translate(exc: ClickHouseError, action: str) -> Exception:
    if isinstance(exc, OperationalError):
        return ClickHouseUnavailable(f"ClickHouse did not answer while trying to {action}: {exc}", retry_after=2.0)
    code = getattr(exc, "code", None)
    if code in _TRANSIENT_CODES:
        return ClickHouseUnavailable(f"ClickHouse is busy ({action}): {_first_line(exc)}", retry_after=5.0)
    return ClickHouseRejected(f"ClickHouse refused to {action}: {_first_line(exc)}", code)


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
) -> None:
    """Insert column-oriented `data`; a repeated `dedup_token` makes ClickHouse skip an insert it already has."""
    settings: dict[str, Any] = {"insert_deduplication_token": dedup_token} if dedup_token else {}
    call(
        f"insert into {table}",
        lambda: client.insert(table, data, column_names=list(columns), column_oriented=True, settings=settings),
    )


__all__ = ["Client", "ClickHouseRejected", "call", "connect", "insert", "translate", "utc"]
