"""`trailhouse sources apply FILE`: the registry made equal to a TOML file of sources, with the difference shown.

The file lists every source, one `[[sources]]` table each (the same keys as `trailhouse sources add`):

    [[sources]]
    account = "1234-5678-9012"
    region = "us-east-1"
    bucket = "s3://org-trail"
    org_id = "o-a1b2c3d4e5"                                   # optional
    prefix = "trails"                                         # optional
    role_arn = "arn:aws:iam::123456789012:role/trailhouse"    # optional; profile, external_id too

Sources in the registry but not in the file are removed (their events stay searchable, their checkpoints stay, so
adding one back resumes where it was). Reading and planning are pure; only `Registry.apply` writes.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from trailhouse.errors import InvalidSource
from trailhouse.sources import Source, new_source

_KEYS = ("account", "region", "bucket", "prefix", "org_id", "profile", "role_arn", "external_id")
_SHOWN = ("bucket", "prefix", "org_id", "profile", "role_arn", "external_id")


def read_sources_file(path: Path, now: datetime) -> list[Source]:
    """Every source of the file, validated; raise `InvalidSource` naming the entry and what to fix."""
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InvalidSource(f"{path}: no such file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidSource(f"{path} is not valid TOML: {exc}") from exc
    entries = document.get("sources", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidSource(f"{path}: write each source as a [[sources]] table")
    unknown_top = sorted(set(document) - {"sources"})
    if unknown_top:
        raise InvalidSource(f"{path}: unknown key(s) {', '.join(unknown_top)}; only [[sources]] tables belong here")
    sources: dict[str, Source] = {}
    for number, entry in enumerate(entries, start=1):
        where = f"{path}, source #{number}"
        unknown = sorted(set(entry) - set(_KEYS))
        if unknown:
            raise InvalidSource(f"{where}: unknown key(s) {', '.join(unknown)}; use {', '.join(_KEYS)}")
        missing = [k for k in ("account", "region", "bucket") if not entry.get(k)]
        if missing:
            raise InvalidSource(f"{where}: {', '.join(missing)} missing")
        try:
            source = new_source(
                str(entry["account"]),
                str(entry["region"]),
                str(entry["bucket"]),
                str(entry.get("prefix", "")),
                entry.get("org_id"),
                now,
                profile=entry.get("profile"),
                role_arn=entry.get("role_arn"),
                external_id=entry.get("external_id"),
            )
        except InvalidSource as exc:
            raise InvalidSource(f"{where}: {exc}") from exc
        if source.source_id in sources:
            raise InvalidSource(f"{where}: {source.source_id} is listed twice; one account and region is one source")
        sources[source.source_id] = source
    return list(sources.values())


@dataclass(frozen=True)
class Change:
    source_id: str
    before: Source | None
    after: Source | None

    def describe(self) -> str:
        if self.before is None and self.after is not None:
            return f"+ {self.source_id}  {self.after.bucket}" + _extras(self.after)
        if self.after is None:
            return f"- {self.source_id}"
        assert self.before is not None
        changed = [
            f"{name} {getattr(self.before, name) or '-'} -> {getattr(self.after, name) or '-'}"
            for name in _SHOWN
            if getattr(self.before, name) != getattr(self.after, name)
        ]
        return f"~ {self.source_id}  " + "; ".join(changed)


def _extras(source: Source) -> str:
    extras = [f"{name} {getattr(source, name)}" for name in _SHOWN[1:] if getattr(source, name)]
    return f" ({', '.join(extras)})" if extras else ""


@dataclass(frozen=True)
class Plan:
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0

    @property
    def writes(self) -> dict[str, Source | None]:
        """What to write to the registry: the new registration, or None to remove."""
        return {c.source_id: c.after for c in self.changes}

    def summary(self) -> str:
        added = sum(1 for c in self.changes if c.before is None)
        removed = sum(1 for c in self.changes if c.after is None)
        updated = len(self.changes) - added - removed
        return f"{added} to add, {updated} to update, {removed} to remove, {self.unchanged} unchanged"


def plan(current: list[Source], desired: list[Source]) -> Plan:
    """What turns the registry `current` into `desired`; an updated source keeps its creation time."""
    now = {s.source_id: s for s in current}
    want = {s.source_id: s for s in desired}
    changes: list[Change] = []
    unchanged = 0
    for source_id in sorted(now.keys() | want.keys()):
        before, after = now.get(source_id), want.get(source_id)
        if before is not None and after is not None:
            if before.settings_equal(after):
                unchanged += 1
                continue
            after = Source(**{**after.__dict__, "created_at": before.created_at})
        changes.append(Change(source_id, before, after))
    return Plan(changes, unchanged)
