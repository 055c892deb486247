"""Which topic goes into which ClickHouse table, and how its Avro records become columns. Pure, no I/O.

The Avro field names are the column names, so a table's columns are read off its schema: adding a field to the
schema (with a default) and a column to the table (in a migration) is all a new field needs. Likewise, sinking a
new topic is one line in `SINK_TOPICS` plus the migration that creates its table: the sink is the same for all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas import Codec
from trailhouse.config import Settings


@dataclass(frozen=True)
class TableSpec:
    table: str
    codec: Codec
    columns: tuple[str, ...]
    text_columns: frozenset[str]  # non-Nullable String columns: Avro null is stored as ''

    def to_columns(self, records: list[dict[str, Any]]) -> list[list[Any]]:
        """Column-oriented data of `records`, in `columns` order."""
        data = []
        for name in self.columns:
            values = [record.get(name) for record in records]
            if name in self.text_columns:
                values = ["" if v is None else v for v in values]
            data.append(values)
        return data


def _is_text(avro_type: Any) -> bool:
    return avro_type == "string" or (isinstance(avro_type, list) and "string" in avro_type)


def _spec(table: str, schema: str) -> TableSpec:
    codec = Codec.of(schema)
    fields = codec.schema["fields"]
    columns = tuple(f["name"] for f in fields)
    return TableSpec(table, codec, columns, frozenset(f["name"] for f in fields if _is_text(f["type"])))


def events_table() -> TableSpec:
    return _spec("events", "Event")


# (Settings field naming the topic, table, Avro record name), for every topic the sink writes to ClickHouse.
SINK_TOPICS: tuple[tuple[str, str, str], ...] = (
    ("topic_events", "events", "Event"),
    ("topic_sources", "sources", "SourceState"),
    ("topic_alerts", "alerts", "Alert"),
    ("topic_insights", "insights", "Insight"),
)


def sink_tables(settings: Settings) -> dict[str, TableSpec]:
    """topic name -> where and how the sink writes its messages."""
    return {getattr(settings, topic): _spec(table, schema) for topic, table, schema in SINK_TOPICS}
