"""Enrichment: one CloudTrail record's text -> an `Event` (schemas/event.avsc). Pure functions, no I/O.

Records vary across eventVersion 1.01 ... 1.1x and event types: fields are often missing or of another shape
than documented. Enrichment therefore never drops a record for a missing field: it fills what it can derive
(the region and account from the log file's key, the event time from the ingest time) and leaves the rest null.
Only text that is not a JSON object is rejected (`NotARecord`), to go to the dead-letter topic. The record's
original text is carried unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson


class NotARecord(ValueError):
    """The text is not a JSON object, so it cannot be a CloudTrail record."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class FileContext:
    """What the log file (not the record) says: where it came from and when it was read."""

    source_id: str
    object_key: str
    account: str  # account in the key; may differ from the records' recipientAccountId (central trails)
    region: str
    ingest_time_ms: int


def enrich(text: str, ctx: FileContext) -> dict[str, Any]:
    """The `Event` of one record; raises `NotARecord` when `text` is not a JSON object."""
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise NotARecord(f"not valid JSON: {exc}", "not_json") from exc
    if not isinstance(record, dict):
        raise NotARecord(f"a record must be a JSON object, got {type(record).__name__}", "not_an_object")
    identity = record.get("userIdentity")
    if not isinstance(identity, dict):
        identity = {}
    return {
        "event_id": _text(record.get("eventID")) or _derived_id(text),
        "event_time": _epoch_ms(record.get("eventTime")) or ctx.ingest_time_ms,
        "event_version": _text(record.get("eventVersion")),
        "event_type": _text(record.get("eventType")),
        "event_category": _text(record.get("eventCategory")),
        "event_source": _text(record.get("eventSource")) or "",
        "event_name": _text(record.get("eventName")) or "",
        "aws_region": _text(record.get("awsRegion")) or ctx.region,
        "recipient_account_id": _text(record.get("recipientAccountId"))
        or _text(identity.get("accountId"))
        or ctx.account,
        "source_id": ctx.source_id,
        "user_type": _text(identity.get("type")),
        "user_arn": _text(identity.get("arn")),
        "user_name": principal_name(identity),
        "user_account_id": _text(identity.get("accountId")),
        "access_key_id": _text(identity.get("accessKeyId")),
        "source_ip": _text(record.get("sourceIPAddress")),
        "user_agent": _text(record.get("userAgent")),
        "error_code": _text(record.get("errorCode")),
        "error_message": _text(record.get("errorMessage")),
        "read_only": _flag(record.get("readOnly")),
        "management_event": _flag(record.get("managementEvent")),
        "request_id": _text(record.get("requestID")),
        "object_key": ctx.object_key,
        "ingest_time": ctx.ingest_time_ms,
        "record": text,
    }


def principal_name(identity: dict[str, Any]) -> str | None:
    """A readable principal: the IAM user, role/session of an assumed role, root, or the invoking service."""
    if name := _text(identity.get("userName")):
        return name
    arn = _text(identity.get("arn")) or ""
    if ":assumed-role/" in arn:
        return arn.split(":assumed-role/", 1)[1]  # RoleName/SessionName
    if arn.endswith(":root"):
        return "root"
    context = identity.get("sessionContext")
    issuer = context.get("sessionIssuer") if isinstance(context, dict) else None
    if isinstance(issuer, dict) and (issuer_name := _text(issuer.get("userName"))):
        return issuer_name
    return _text(identity.get("invokedBy")) or _text(identity.get("principalId"))


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return orjson.dumps(value).decode()


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _epoch_ms(value: Any) -> int | None:
    """eventTime ('2023-07-10T11:42:10Z', sometimes with fractions or an offset) as epoch milliseconds."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _derived_id(text: str) -> str:
    """A stable id for a record without eventID, so re-reading the same record still de-duplicates."""
    return "derived-" + hashlib.sha256(text.encode()).hexdigest()[:32]
