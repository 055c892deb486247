"""DDL text for one server or a cluster, from one description of each table. Pure: strings in, strings out.

On one server a table is what it says: `CREATE TABLE db.events ... ENGINE = ReplacingMergeTree(...)`.

With a cluster (`--cluster NAME`, a cluster of the server's `remote_servers`), every statement runs `ON CLUSTER`,
and a table the sink writes is two tables:
- `<name>_local` on every node, holding the data: the Replicated form of the engine, one replica set per shard
  (Keeper path `/clickhouse/tables/{shard}/{database}/{table}`, replica `{replica}`: macros every node defines);
- `<name>`, a Distributed table over the `_local` tables, sharded by a hash of the row's identity (the event id),
  so every copy of one event lands on the same shard and ReplacingMergeTree/FINAL still collapse them there.
Users and the sink only ever name `<name>`; indexes, TTL and storage settings go to `<name>_local`.

Bookkeeping tables (`schema_migrations`, `sink_batches`) are replicated to every node of the cluster (one Keeper
path for all shards), so whichever node a process connects to sees the same versions and batches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from trailhouse.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Layout:
    """Where trailhouse's tables live: a database, on one server or on a named cluster."""

    database: str
    cluster: str | None = None

    def __post_init__(self) -> None:
        for what, name in (("database", self.database), ("cluster", self.cluster)):
            if name is not None and not _NAME.match(name):
                raise ConfigError(f"ClickHouse {what} name {name!r}: use letters, digits, '_' and '-'")

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {quote(self.cluster)}" if self.cluster else ""

    def name(self, table: str) -> str:
        """The qualified name users and the sink read and write."""
        return f"{quote(self.database)}.{quote(table)}"

    def storage(self, table: str) -> str:
        """The qualified name of the table that holds the rows (indexes, TTL and settings go here)."""
        return self.name(f"{table}_local" if self.cluster else table)

    def create_database(self) -> str:
        return f"CREATE DATABASE IF NOT EXISTS {quote(self.database)}{self.on_cluster}"


@dataclass(frozen=True)
class Table:
    """One table, described once for both layouts.

    `engine` is the single-server engine name (e.g. ReplacingMergeTree) and `engine_args` its arguments; the
    cluster form prefixes Replicated and puts the Keeper path and replica first. `shard_by` is the Distributed
    sharding expression; None means the table is not sharded but replicated to every node (bookkeeping).
    """

    name: str
    columns: Sequence[str]
    order_by: str
    engine: str = "MergeTree"
    engine_args: str = ""
    partition_by: str | None = None
    indexes: Sequence[str] = ()
    settings: Mapping[str, str | int] = field(default_factory=dict)
    shard_by: str | None = None


def create_table(layout: Layout, table: Table) -> list[str]:
    """CREATE TABLE IF NOT EXISTS statements of `table`: one on a server, two (local + Distributed) on a cluster."""
    body = ",\n    ".join([*table.columns, *table.indexes])
    replicated = layout.cluster is not None
    settings = dict(table.settings)
    clauses = [f"ENGINE = {_engine(layout, table)}"]
    if table.partition_by:
        clauses.append(f"PARTITION BY {table.partition_by}")
    clauses.append(f"ORDER BY {table.order_by}")
    if replicated and "non_replicated_deduplication_window" in settings:
        settings["replicated_deduplication_window"] = settings.pop("non_replicated_deduplication_window")
    if settings:
        clauses.append("SETTINGS " + ", ".join(f"{k} = {v}" for k, v in settings.items()))
    storage = layout.storage(table.name) if table.shard_by else layout.name(table.name)
    statements = [f"CREATE TABLE IF NOT EXISTS {storage}{layout.on_cluster}\n(\n    {body}\n)\n" + "\n".join(clauses)]
    if replicated and table.shard_by:
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {layout.name(table.name)}{layout.on_cluster} AS {storage}\n"
            f"ENGINE = Distributed({_literal(layout.cluster or '')}, {_literal(layout.database)}, "
            f"{_literal(table.name + '_local')}, {table.shard_by})"
        )
    return statements


def _engine(layout: Layout, table: Table) -> str:
    if layout.cluster is None:
        return f"{table.engine}({table.engine_args})"
    scope = "{shard}" if table.shard_by else "all"
    path = _literal(f"/clickhouse/tables/{scope}/{{database}}/{{table}}")
    args = ", ".join(a for a in (path, _literal("{replica}"), table.engine_args) if a)
    return f"Replicated{table.engine}({args})"


def add_columns(layout: Layout, table: str, columns: Sequence[str]) -> list[str]:
    """ALTER ... ADD COLUMN IF NOT EXISTS, on the storage table and (on a cluster) on its Distributed table too."""
    clauses = ",\n    ".join(f"ADD COLUMN IF NOT EXISTS {c}" for c in columns)
    targets = [layout.storage(table)] + ([layout.name(table)] if layout.cluster else [])
    return [f"ALTER TABLE {target}{layout.on_cluster}\n    {clauses}" for target in targets]


def alter_storage(layout: Layout, table: str, clauses: Sequence[str]) -> str:
    """ALTER of the table holding the rows: indexes, TTL, storage settings."""
    return f"ALTER TABLE {layout.storage(table)}{layout.on_cluster}\n    " + ",\n    ".join(clauses)


def create_view(layout: Layout, view: str, select: str) -> str:
    """CREATE OR REPLACE VIEW: a view holds no data, so replacing it is always safe and idempotent."""
    return f"CREATE OR REPLACE VIEW {layout.name(view)}{layout.on_cluster} AS\n{select.strip()}"


def create_materialized_view(layout: Layout, view: str, source: str, target: str, select: str) -> str:
    """CREATE MATERIALIZED VIEW IF NOT EXISTS that feeds `target` from every insert into `source`.

    `select` names the source as `{source}`; on a cluster the view reads and writes the `_local` tables on every
    node, so each shard feeds its own rows (a Distributed table is not what receives inserts there).
    """
    body = select.strip().replace("{source}", layout.storage(source))
    into = f"{layout.on_cluster} TO {layout.storage(target)}"
    return f"CREATE MATERIALIZED VIEW IF NOT EXISTS {layout.name(view)}{into} AS\n{body}"


def quote(identifier: str) -> str:
    return f"`{identifier}`" if "-" in identifier else identifier


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
