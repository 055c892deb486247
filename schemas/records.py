"""Builders of the records that several stages write, so each contract is filled the same way everywhere."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024


def dead_letter(
    *,
    source_id: str,
    stage: str,
    reason: str,
    kind: str,
    location: str,
    payload: bytes,
    when: datetime,
    payload_size: int | None = None,
) -> dict[str, Any]:
    """A `DeadLetter` record; the payload is kept up to 64 KiB, with the full size alongside (`payload_size` when
    the caller holds only the start of a large input)."""
    return {
        "source_id": source_id,
        "stage": stage,
        "reason": reason,
        "error_type": kind,
        "location": location,
        "time": when,
        "payload": payload[:DEAD_LETTER_PAYLOAD_BYTES],
        "payload_size": len(payload) if payload_size is None else payload_size,
    }


def insight(record: dict[str, Any], source_id: str, *, aws_made: bool, text: str | None = None) -> dict[str, Any]:
    """The `Insight` record of an Insights event in CloudTrail's shape: made by trailhouse's detector, or one AWS
    delivered in a trail's CloudTrail-Insight/ files (`aws_made`, with `text` its original JSON, kept as is).

    Raises KeyError when the record lacks eventID, eventTime or insightDetails (not an Insights event)."""
    details = record["insightDetails"]
    stats = (details.get("insightContext") or {}).get("statistics") or {}
    return {
        "source_id": source_id,
        "event_id": record["eventID"],
        "shared_event_id": record.get("sharedEventID") or record["eventID"],
        "state": details.get("state", ""),
        "event_time": datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00")),
        "aws_region": record.get("awsRegion", ""),
        "recipient_account_id": record.get("recipientAccountId", ""),
        "event_source": details.get("eventSource", ""),
        "event_name": details.get("eventName", ""),
        "insight_type": details.get("insightType", ""),
        "error_code": details.get("errorCode"),
        "baseline_average": float((stats.get("baseline") or {}).get("average", 0.0)),
        "insight_average": float((stats.get("insight") or {}).get("average", 0.0)),
        "insight_duration": int(stats.get("insightDuration", 0)),
        "baseline_duration": int(stats.get("baselineDuration", 0)),
        "aws_made": aws_made,
        "record": text if text is not None else orjson.dumps(record).decode(),
    }
