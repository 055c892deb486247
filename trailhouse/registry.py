"""The source registry: the compacted topic `trailhouse.sources-config`, read and written as a table.

Every process reads the topic itself, so a source added by `trailhouse sources add` is seen by running pollers
at their next poll, with no restart.
"""

from __future__ import annotations

from schemas import Codec
from trailhouse.config import Settings
from trailhouse.errors import UnknownSource
from trailhouse.kafka import CompactedTable
from trailhouse.sources import Source
from trailhouse.sources_file import Plan


class Registry:
    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self._table = CompactedTable(settings, bootstrap, settings.topic_registry, Codec.of("SourceConfig"))

    def sources(self) -> list[Source]:
        return sorted((Source.from_record(r) for r in self._table.read().values()), key=lambda s: s.source_id)

    def add(self, source: Source) -> Source | None:
        """Register or update `source`; return the registration it replaced, if any (kept: its creation time)."""
        previous = next((s for s in self.sources() if s.source_id == source.source_id), None)
        if previous is not None:
            source = Source(**{**source.__dict__, "created_at": previous.created_at})
        self._table.write({source.source_id: source.to_record()})
        return previous

    def remove(self, source_id: str) -> Source:
        current = {s.source_id: s for s in self.sources()}
        if source_id not in current:
            known = ", ".join(current) or "none registered"
            raise UnknownSource(f"no source {source_id!r}; registered: {known}")
        self._table.write({source_id: None})
        return current[source_id]

    def apply(self, plan: Plan) -> None:
        """Write a plan's additions, updates and removals at once."""
        if plan.changes:
            self._table.write({k: (None if v is None else v.to_record()) for k, v in plan.writes.items()})
