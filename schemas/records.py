"""Builders of the records that several stages write, so each contract is filled the same way everywhere."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
