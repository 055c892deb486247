"""A source's checkpoint (compacted topic `trailhouse.checkpoints`) and the rules that decide what to list and
publish from it. Pure: no I/O here.

Listing walks a lane (the log files, or the Insights files, of one account and region) in key order, which is
delivery order. A file that lands late with an older time in its name sorts before the checkpoint, so each listing
starts `poll_lookback` seconds of delivery time before the newest file published, and the checkpoint remembers the
names of the files published within that window (`recent_files`): a key listed again is published only if it sorts
after the lane's last key or its name is not remembered. A file is therefore published once even when both the
look-back and the forward part of a listing see it, and a late file within the window is never skipped.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from producers.layout import FileKind, delivered_at, file_name, key_at

EPOCH = datetime.fromtimestamp(0, UTC)


def poller_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Checkpoint:
    source_id: str
    last_key: str = ""
    insight_last_key: str = ""
    recent_files: frozenset[str] = field(default_factory=frozenset)
    files: int = 0
    records: int = 0
    bytes: int = 0
    dead_letters: int = 0
    last_dead_letter: str | None = None
    last_poll_time: datetime = EPOCH
    last_error: str | None = None
    poller: str = ""

    @staticmethod
    def from_record(record: dict[str, Any]) -> Checkpoint:
        return Checkpoint(
            source_id=record["source_id"],
            last_key=record["last_key"],
            insight_last_key=record.get("insight_last_key", ""),
            recent_files=frozenset(record.get("recent_files", ())),
            files=record["files"],
            records=record["records"],
            bytes=record.get("bytes", 0),
            dead_letters=record.get("dead_letters", 0),
            last_dead_letter=record.get("last_dead_letter"),
            last_poll_time=record["last_poll_time"],
            last_error=record.get("last_error"),
            poller=record.get("poller", ""),
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "source_id": self.source_id,
            "last_key": self.last_key,
            "insight_last_key": self.insight_last_key,
            "recent_files": sorted(self.recent_files),
            "files": self.files,
            "records": self.records,
            "bytes": self.bytes,
            "dead_letters": self.dead_letters,
            "last_dead_letter": self.last_dead_letter,
            "last_poll_time": self.last_poll_time,
            "last_error": self.last_error,
            "poller": self.poller,
        }

    def lane_key(self, kind: FileKind) -> str:
        return self.insight_last_key if kind is FileKind.INSIGHT else self.last_key

    def published(
        self,
        kind: FileKind,
        key: str,
        *,
        records: int,
        size: int,
        lookback: timedelta,
        dead_letters: int = 0,
        dead: str | None = None,
    ) -> Checkpoint:
        """The checkpoint once `key` is published: `dead_letters` of it (the whole file, or some of its records)
        went to the dead-letter topic, the last because of `dead`."""
        lane = "insight_last_key" if kind is FileKind.INSIGHT else "last_key"
        return replace(
            self,
            **{lane: max(self.lane_key(kind), key)},
            recent_files=_window(self.recent_files | {file_name(key)}, lookback),
            files=self.files + 1,
            records=self.records + records,
            bytes=self.bytes + size,
            dead_letters=self.dead_letters + dead_letters,
            last_dead_letter=dead if dead is not None else self.last_dead_letter,
        )


def _window(names: frozenset[str], lookback: timedelta) -> frozenset[str]:
    """Per lane, the names delivered within `lookback` of the lane's newest; names without a time are not kept."""
    kept: set[str] = set()
    for kind in (FileKind.LOGS, FileKind.INSIGHT):
        times = {name: delivered_at(name) for name in names if _lane_of(name) is kind}
        dated = [t for t in times.values() if t is not None]
        if dated and lookback > timedelta(0):
            oldest = max(dated) - lookback
            kept.update(name for name, t in times.items() if t is not None and t >= oldest)
    return frozenset(kept)


def _lane_of(name: str) -> FileKind:
    return FileKind.INSIGHT if f"_{FileKind.INSIGHT.value}_" in name else FileKind.LOGS


@dataclass(frozen=True)
class Bounds:
    """Delivery-time bounds of a backfill (`trailhouse poll --since ... --until ...`)."""

    since: datetime | None = None
    until: datetime | None = None


def listing_start(checkpoint: Checkpoint, kind: FileKind, lane_prefix: str, lookback: timedelta, bounds: Bounds) -> str:
    """Where the listing of a lane starts (StartAfter): `lookback` before the lane's last key, never before
    `bounds.since`. With no checkpoint and no `since`, the beginning."""
    last = checkpoint.lane_key(kind)
    start = last
    last_time = delivered_at(last) if last else None
    # A checkpoint that remembers no file of the lane (written before v2) has nothing to tell late files apart by.
    remembers = any(_lane_of(name) is kind for name in checkpoint.recent_files)
    if last_time is not None and lookback > timedelta(0) and remembers:
        start = min(last, key_at(lane_prefix, last_time - lookback))
    if bounds.since is not None:
        start = max(start, key_at(lane_prefix, bounds.since))
    return start


def past_until(key: str, lane_prefix: str, bounds: Bounds) -> bool:
    """True once a listing reached files delivered at or after `bounds.until` (keys sort by delivery time)."""
    return bounds.until is not None and key >= key_at(lane_prefix, bounds.until)


def is_new(checkpoint: Checkpoint, kind: FileKind, key: str) -> bool:
    """Whether a listed key still has to be published: after the lane's last key, or a late file not yet seen."""
    return key > checkpoint.lane_key(kind) or file_name(key) not in checkpoint.recent_files
