"""What an SQS message says about new objects: S3 event notifications, however they were delivered. Pure.

Accepted shapes (the queue may receive any mix):
- S3 -> SQS directly: `{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {...}}]}`,
  keys URL-encoded (`+` for a space);
- S3 -> SNS -> SQS: an SNS envelope `{"Type": "Notification", "Message": "<one of these shapes, as a string>"}`
  (with raw message delivery on, the inner shape arrives unwrapped);
- S3 -> EventBridge -> SQS: `{"detail-type": "Object Created", "source": "aws.s3", "detail": {"bucket": {"name"},
  "object": {"key", "size"}}}`, keys not encoded;
- CloudTrail's own notification of a delivered log file (the trail's SNS topic): `{"s3Bucket": "...",
  "s3ObjectKey": ["...", ...]}`;
- S3's `s3:TestEvent`, sent when a notification is configured: nothing to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str
    size: int | None = None
    etag: str = ""


@dataclass(frozen=True)
class Notification:
    objects: list[ObjectRef] = field(default_factory=list)  # created objects, in message order
    problem: str | None = None  # set when the message is not a notification trailhouse understands


class _NotUnderstood(ValueError):
    pass


def parse_notification(body: str) -> Notification:
    """The objects a message announces as created; deletions and test events announce none."""
    try:
        return Notification(objects=_objects(json.loads(body), depth=0))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return Notification(problem="not JSON: not an S3 event notification")
    except (_NotUnderstood, KeyError, TypeError, AttributeError) as exc:
        return Notification(problem=f"not an S3 event notification trailhouse understands: {exc}")


def _objects(message: Any, depth: int) -> list[ObjectRef]:
    if not isinstance(message, dict):
        raise _NotUnderstood("the message is not a JSON object")
    if message.get("Type") == "Notification" and isinstance(message.get("Message"), str) and depth < 2:
        return _objects(json.loads(message["Message"]), depth + 1)  # SNS envelope
    if message.get("Event") == "s3:TestEvent":
        return []
    if "Records" in message:
        return [ref for record in message["Records"] for ref in _s3_record(record)]
    if message.get("source") == "aws.s3" and "detail" in message:
        return _eventbridge(message)
    if "s3Bucket" in message and "s3ObjectKey" in message:
        return [ObjectRef(message["s3Bucket"], key) for key in message["s3ObjectKey"]]
    raise _NotUnderstood(f"unknown shape with keys {sorted(message)[:8]}")


def _s3_record(record: dict[str, Any]) -> list[ObjectRef]:
    if record.get("eventSource") != "aws:s3":
        raise _NotUnderstood(f"a record from {record.get('eventSource')!r}, not aws:s3")
    if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
        return []
    s3 = record["s3"]
    obj = s3["object"]
    return [ObjectRef(s3["bucket"]["name"], unquote_plus(obj["key"]), obj.get("size"), obj.get("eTag", ""))]


def _eventbridge(message: dict[str, Any]) -> list[ObjectRef]:
    if message.get("detail-type") != "Object Created":
        return []
    detail = message["detail"]
    obj = detail["object"]
    return [ObjectRef(detail["bucket"]["name"], obj["key"], obj.get("size"), obj.get("etag", obj.get("eTag", "")))]
