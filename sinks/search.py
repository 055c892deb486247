"""Wildcard search over the events table: a query string -> parameterized SQL, and its execution.

Syntax (terms are AND-ed):
    *123456789012*        `*` any run of characters, `?` one character; a bare term matches anywhere in the
                          original record (substring semantics), case-sensitive (`case_insensitive` for -i)
    eventName:Delete*     `field:pattern` matches a named column as a whole (CloudTrail names or column names)
    "two words"           quotes keep spaces (and a literal `:`) inside one term; field:"two words" too
    arn:aws:iam::1:root   a `name:` that is not a field is plain text, so ARNs need no quotes

User text only ever reaches ClickHouse as bound parameters; column names come from a fixed table, never from
the query. Translation is pure and unit-tested; `search()` is the thin I/O part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sinks.clickhouse import Client, call, utc
from trailhouse.errors import SearchSyntaxError

# CloudTrail field names (as in the records) and column names, both accepted in `field:pattern`.
FIELDS: dict[str, str] = {
    "eventID": "event_id",
    "eventTime": "event_time",
    "eventVersion": "event_version",
    "eventType": "event_type",
    "eventCategory": "event_category",
    "eventSource": "event_source",
    "eventName": "event_name",
    "awsRegion": "aws_region",
    "recipientAccountId": "recipient_account_id",
    "userIdentity.type": "user_type",
    "userIdentity.arn": "user_arn",
    "userIdentity.userName": "user_name",
    "userIdentity.accountId": "user_account_id",
    "userIdentity.accessKeyId": "access_key_id",
    "sourceIPAddress": "source_ip",
    "userAgent": "user_agent",
    "errorCode": "error_code",
    "errorMessage": "error_message",
    "readOnly": "read_only",
    "managementEvent": "management_event",
    "requestID": "request_id",
    "source": "source_id",
    "account": "recipient_account_id",
    "user": "actor",
    "actor": "actor",
    "sessionIssuer": "session_issuer_arn",
    "action": "action_class",
    "agent": "user_agent_family",
    "tlsVersion": "tls_version",
    "vpcEndpointId": "vpc_endpoint_id",
    "resources": "resources",
    "resource": "resources",
}
COLUMNS = frozenset(FIELDS.values()) | {"object_key", "ingest_time", "outcome", "console_login", "is_error", "mfa_used"}
_ARRAY_COLUMNS = frozenset({"resources"})
_TEXT_COLUMNS = COLUMNS - {"event_time", "ingest_time", "read_only", "management_event", "is_error", "mfa_used"}
_TEXT_COLUMNS -= _ARRAY_COLUMNS
MAX_QUERY_CHARS = 64 * 1024


@dataclass(frozen=True)
class Term:
    column: str  # "record" for free terms
    pattern: str


@dataclass(frozen=True)
class SearchQuery:
    terms: tuple[Term, ...]
    since: datetime | None = None
    until: datetime | None = None
    case_insensitive: bool = False


_TOKEN = re.compile(r"""\s*(?:(?P<field>[A-Za-z_][A-Za-z0-9_.]*):)?(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>\S+))""")


def parse_query(text: str) -> tuple[Term, ...]:
    """Split a query into terms; raise `SearchSyntaxError` naming the problem.

    A term whose part before ':' is not a field name is searched as text, so ARNs work unquoted.
    """
    if len(text) > MAX_QUERY_CHARS:
        raise SearchSyntaxError(f"the query is {len(text)} characters long; the limit is {MAX_QUERY_CHARS}")
    terms = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        assert match is not None  # \S+ matches whatever is not whitespace
        position = match.end()
        terms.append(_term(match))
    return tuple(terms)


def _term(match: re.Match[str]) -> Term:
    name, bare = match["field"], match["bare"]
    quoted = match["dq"] if match["dq"] is not None else match["sq"]
    if bare is not None and bare[0] in "\"'" and bare.count(bare[0]) == 1:
        raise SearchSyntaxError(
            f"cannot read {match[0].strip()!r}: close the quote; to search for a quote character, put the term "
            'in the other kind of quotes (\'say "hi"\' or "it\'s")'
        )
    pattern = quoted if quoted is not None else bare
    if name is None and bare is not None and bare.endswith(":") and _column(bare[:-1]):
        raise SearchSyntaxError(f"{bare!r} has no pattern after ':'; write e.g. {bare}Delete*")
    if name is None:
        return Term("record", pattern)
    column = _column(name)
    if column is None:
        return Term("record", match[0].strip())
    if not pattern:
        raise SearchSyntaxError(f"{match[0].strip()!r} has no pattern after ':'; write e.g. {name}:Delete*")
    return Term(column, pattern)


def _column(name: str) -> str | None:
    return FIELDS.get(name) or (name if name in COLUMNS else None)


def glob_to_like(pattern: str) -> str:
    """A glob (`*`, `?`) as a LIKE pattern, with LIKE's own wildcards and escape character taken literally."""
    out = []
    for char in pattern:
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char in "%_\\":
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def where_clause(query: SearchQuery) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (without the keyword) and its parameters; '1' when there is no condition."""
    conditions: list[str] = []
    params: dict[str, Any] = {}
    operator = "ILIKE" if query.case_insensitive else "LIKE"
    for index, term in enumerate(query.terms):
        name = f"p{index}"
        if term.column == "record":
            params[name] = f"%{glob_to_like(term.pattern)}%"
            conditions.append(f"record {operator} {{{name}:String}}")
        elif term.column in _ARRAY_COLUMNS:
            params[name] = glob_to_like(term.pattern)
            conditions.append(f"arrayExists(x -> x {operator} {{{name}:String}}, {term.column})")
        else:
            params[name] = glob_to_like(term.pattern)
            column = term.column if term.column in _TEXT_COLUMNS else f"toString({term.column})"
            conditions.append(f"{column} {operator} {{{name}:String}}")
    if query.since is not None:
        params["since"] = query.since
        conditions.append("event_time >= {since:DateTime64(3, 'UTC')}")
    if query.until is not None:
        params["until"] = query.until
        conditions.append("event_time < {until:DateTime64(3, 'UTC')}")
    return (" AND ".join(conditions) or "1"), params


_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime) -> datetime:
    """'7d', '24h', '30m' (before `now`) or an ISO date/time (UTC unless it says otherwise)."""
    value = text.strip()
    if match := _RELATIVE.match(value):
        return now - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise SearchSyntaxError(
            f"time {text!r}: use a duration before now (30m, 24h, 7d, 2w) or an ISO date (2026-01-31[T12:00])"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# What `--format table` shows, and the order of the columns in every format.
RESULT_COLUMNS = (
    "event_time",
    "event_id",
    "recipient_account_id",
    "aws_region",
    "event_source",
    "event_name",
    "actor",
    "user_arn",
    "source_ip",
    "error_code",
    "source_id",
)


def search(client: Client, database: str, query: SearchQuery, *, limit: int) -> list[dict[str, Any]]:
    """Matching events, newest first, each with `RESULT_COLUMNS` and the original `record` text."""
    where, params = where_clause(query)
    columns = ", ".join((*RESULT_COLUMNS, "record"))
    sql = (
        f"SELECT {columns} FROM {database}.events FINAL WHERE {where} "
        f"ORDER BY event_time DESC, event_id LIMIT {int(limit)}"
    )
    result = call("search events", lambda: client.query(sql, parameters=params))
    return [{k: utc(v) for k, v in zip(result.column_names, row, strict=True)} for row in result.result_rows]


def count(client: Client, database: str, query: SearchQuery) -> int:
    where, params = where_clause(query)
    sql = f"SELECT count() FROM {database}.events FINAL WHERE {where}"
    return int(call("count events", lambda: client.query(sql, parameters=params)).result_rows[0][0])
