"""The Insights detector (streams/insights.py) over the worker's tables, one batch of chunks at a time.

The detector's state lives in two tables: a head per source (watermark, open minutes, the APIs it knows, and the
offset of the last raw message applied) and an entry per source and API (its week of hourly totals: ~2-3 kB as JSON,
~8-20 kB in memory). An entry stored by an older worker is brought to today's form as it is read. Within a batch a
source's chunks run on one state held here in memory; the tables are written once per batch, and only after the
batch's insights are in Kafka (`store`): a worker that dies before that restores the previous state, reads the
chunks again and emits their insights again (same ids). A chunk at or before the head's applied offset was fully
handled before a restart: it is skipped, its insights went out with its first pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from streams.insights import Sensitivity, add_events, observe, to_avro, upgraded_api
from streams.insights import new_state as new_detector_state

_HEAD_FIELDS = ("watermark", "closed", "open", "late")


@dataclass
class _Source:
    state: dict[str, Any]
    applied: int  # offset of the last raw message whose events are in `state`
    message: Any  # that message: the table writes go to its partition
    touched: set[str] = field(default_factory=set)  # APIs changed or forgotten since the tables were written


class DetectionBatch:
    """One batch's detector runs; `heads` and `apis` are the tables (any mutable mapping)."""

    def __init__(self, heads: MutableMapping[str, Any], apis: MutableMapping[str, Any], sensitivity: Sensitivity):
        self._heads, self._apis, self._sensitivity = heads, apis, sensitivity
        self._sources: dict[str, _Source] = {}

    def detect(
        self, source_id: str, events: Iterable[dict[str, Any]], offset: int, message: Any
    ) -> list[dict[str, Any]]:
        """The `Insight` records a chunk's events decide (usually none)."""
        source = self._sources.get(source_id)
        if source is None:
            head = self._heads.get(source_id)
            if head is not None and offset <= head["applied"]:
                return []  # read again after a restart: this chunk's insights went out with its first pass
            source = self._sources[source_id] = _Source(self._restore(source_id, head), offset, message)
        emitted = add_events(
            source.state, (o for o in map(observe, events) if o is not None), source_id, self._sensitivity
        )
        source.applied, source.message = offset, message
        source.touched |= emitted.changed | emitted.forgotten
        return [to_avro(r, source_id) for r in emitted.records]

    def store(self, processing: Callable[[Any], None]) -> None:
        """Write each source's head and the APIs the batch changed or forgot; call once its insights are in Kafka.
        `processing(message)` makes the source's last message the one the table writes belong to."""
        for source_id, source in self._sources.items():
            processing(source.message)
            apis = source.state["apis"]
            self._heads[source_id] = {
                **{k: source.state[k] for k in _HEAD_FIELDS},
                "apis": sorted(apis),
                "applied": source.applied,
            }
            for api_key in source.touched:
                stored = f"{source_id}|{api_key}"
                if api_key in apis:
                    self._apis[stored] = apis[api_key]
                elif stored in self._apis:
                    del self._apis[stored]
        self._sources.clear()

    def _restore(self, source_id: str, head: dict[str, Any] | None) -> dict[str, Any]:
        state = new_detector_state()
        if head is not None:
            state.update({k: head.get(k) for k in _HEAD_FIELDS})
            stored = ((k, self._apis.get(f"{source_id}|{k}")) for k in head["apis"])
            state["apis"] = {k: upgraded_api(api) for k, api in stored if api is not None}
        return state
