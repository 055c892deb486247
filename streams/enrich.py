"""Enrichment: one CloudTrail record's text -> an `Event` (schemas/event.avsc). Pure functions, no I/O.

Records vary across eventVersion 1.01 ... 1.1x and event types: fields are often missing or of another shape
than documented. Enrichment therefore never drops a record for a missing field: it fills what it can derive
(the region and account from the log file's key or the identity, the event time from the ingest time), lists
what it derived in `derived_fields`, and leaves the rest null.
Only text that is not a JSON object is rejected (`NotARecord`), to go to the dead-letter topic. The record's
original text is carried unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.classify import action_class, ip_version, resource_arns, user_agent_family


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
    identity = _object(record.get("userIdentity"))
    derived: list[str] = []

    def given_or_derived(name: str, given: Any, fallback: Any) -> Any:
        """`fallback` is a value, or a function computing it (only for a record that lacks the field)."""
        if given:
            return given
        derived.append(name)
        return fallback() if callable(fallback) else fallback

    event_name = _text(record.get("eventName")) or ""
    event_type = _text(record.get("eventType"))
    read_only = _flag(record.get("readOnly"))
    source_ip = _text(record.get("sourceIPAddress"))
    user_agent = _text(record.get("userAgent"))
    error_code = _text(record.get("errorCode"))
    error_message = _text(record.get("errorMessage"))
    sign_in = event_type == "AwsConsoleSignIn" or event_name == "ConsoleLogin"
    console_login = _text(_object(record.get("responseElements")).get(event_name)) if sign_in else None
    failed = bool(error_code or error_message or console_login == "Failure")
    region = given_or_derived("aws_region", _text(record.get("awsRegion")), ctx.region)
    account = given_or_derived(
        "recipient_account_id",
        _text(record.get("recipientAccountId")),
        _text(identity.get("accountId")) or ctx.account,
    )
    return {
        "event_id": given_or_derived("event_id", _text(record.get("eventID")), lambda: _derived_id(text)),
        "event_time": given_or_derived("event_time", _epoch_ms(record.get("eventTime")), ctx.ingest_time_ms),
        "event_version": _text(record.get("eventVersion")),
        "event_type": event_type,
        "event_category": _text(record.get("eventCategory")),
        "event_source": _text(record.get("eventSource")) or "",
        "event_name": event_name,
        "aws_region": region,
        "recipient_account_id": account,
        "source_id": ctx.source_id,
        "user_type": _text(identity.get("type")),
        "user_arn": _text(identity.get("arn")),
        "user_name": _text(identity.get("userName")),
        "user_account_id": _text(identity.get("accountId")),
        "access_key_id": _text(identity.get("accessKeyId")),
        "source_ip": source_ip,
        "user_agent": user_agent,
        "error_code": error_code,
        "error_message": error_message,
        "read_only": read_only,
        "management_event": _flag(record.get("managementEvent")),
        "request_id": _text(record.get("requestID")),
        "object_key": ctx.object_key,
        "ingest_time": ctx.ingest_time_ms,
        "record": text,
        "actor": principal_name(identity),
        "session_issuer_arn": _text(_object(_object(identity.get("sessionContext")).get("sessionIssuer")).get("arn")),
        "mfa_used": _mfa_used(record, identity),
        "ip_version": ip_version(source_ip),
        "user_agent_family": user_agent_family(user_agent),
        "resources": resource_arns(record, region, account),
        "action_class": action_class(event_name, read_only, event_type),
        "is_error": failed,
        "outcome": "failure" if failed else "success",
        "console_login": console_login,
        "tls_version": _text(_object(record.get("tlsDetails")).get("tlsVersion")),
        "vpc_endpoint_id": _text(record.get("vpcEndpointId")),
        "derived_fields": derived,
    }


def principal_name(identity: dict[str, Any]) -> str | None:
    """A readable principal: the IAM user, role/session of an assumed role, root, a federated or Identity Center
    user, or the invoking service."""
    if name := _text(identity.get("userName")):
        return name
    arn = _text(identity.get("arn")) or ""
    for marker in (":assumed-role/", ":federated-user/"):
        if marker in arn:
            return arn.split(marker, 1)[1]  # RoleName/SessionName, or the federated user's name
    if arn.endswith(":root") or identity.get("type") == "Root":
        return "root"
    if ":user/" in arn:
        return arn.rsplit("/", 1)[1]
    on_behalf = _object(identity.get("onBehalfOf"))  # IAM Identity Center users
    if user_id := _text(on_behalf.get("userId")):
        return user_id
    issuer = _object(_object(identity.get("sessionContext")).get("sessionIssuer"))
    if issuer_name := _text(issuer.get("userName")):
        return issuer_name
    return _text(identity.get("invokedBy")) or _text(identity.get("principalId"))


def _mfa_used(record: dict[str, Any], identity: dict[str, Any]) -> bool | None:
    sign_in = _text(_object(record.get("additionalEventData")).get("MFAUsed"))
    if sign_in in ("Yes", "No"):
        return sign_in == "Yes"
    attributes = _object(_object(identity.get("sessionContext")).get("attributes"))
    return _flag(attributes.get("mfaAuthenticated"))


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


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
