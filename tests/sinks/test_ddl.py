"""The DDL trailhouse generates, for one server and for a cluster. Cluster DDL cannot run here (no Keeper, no
remote_servers), so its text is checked, and every statement is parsed by the real ClickHouse parser (chDB)."""

import pytest

from sinks.ddl import Layout
from sinks.migrations import statements
from sinks.retention import retention_statements
from trailhouse.errors import ConfigError

CLUSTER = Layout("trailhouse", cluster="prod")


def _one(statements_: list[str], start: str) -> str:
    [found] = [s for s in statements_ if " ".join(s.split()).startswith(start)]
    return " ".join(found.split())


def test_one_server_creates_plain_tables_without_on_cluster():
    ddl = statements(Layout("trailhouse"))
    assert not any("ON CLUSTER" in s or "Replicated" in s or "Distributed" in s for s in ddl)
    events = _one(ddl, "CREATE TABLE IF NOT EXISTS trailhouse.events (")
    assert "ENGINE = ReplacingMergeTree(ingest_time) PARTITION BY toDate(event_time)" in events
    assert "ORDER BY (recipient_account_id, event_time, event_id)" in events
    assert "SETTINGS non_replicated_deduplication_window = 10000, index_granularity_bytes = 1048576" in events


def test_a_cluster_gets_replicated_local_tables_under_distributed_ones():
    ddl = statements(CLUSTER)
    assert all(" ON CLUSTER prod" in s for s in ddl if not s.startswith("INSERT"))  # data, not DDL
    local = _one(ddl, "CREATE TABLE IF NOT EXISTS trailhouse.events_local ON CLUSTER prod (")
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', "
        "ingest_time)" in local
    )
    assert "SETTINGS index_granularity_bytes = 1048576, replicated_deduplication_window = 10000" in local
    assert _one(ddl, "CREATE TABLE IF NOT EXISTS trailhouse.events ON CLUSTER") == (
        "CREATE TABLE IF NOT EXISTS trailhouse.events ON CLUSTER prod AS trailhouse.events_local "
        "ENGINE = Distributed('prod', 'trailhouse', 'events_local', cityHash64(event_id))"
    )
    alerts = _one(ddl, "CREATE TABLE IF NOT EXISTS trailhouse.alerts ON CLUSTER")
    assert "Distributed('prod', 'trailhouse', 'alerts_local', cityHash64(alert_id))" in alerts


def test_bookkeeping_tables_are_replicated_to_every_node_not_sharded():
    ddl = statements(CLUSTER)
    for table in ("schema_migrations", "sink_batches"):
        created = _one(ddl, f"CREATE TABLE IF NOT EXISTS trailhouse.{table} ON CLUSTER prod (")
        assert "ReplicatedReplacingMergeTree('/clickhouse/tables/all/{database}/{table}', '{replica}'" in created
        assert not any(f"{table}_local" in s for s in ddl)


def test_on_a_cluster_columns_change_on_both_tables_and_indexes_only_where_the_rows_are():
    ddl = [" ".join(s.split()) for s in statements(CLUSTER)]
    column = [s for s in ddl if "ADD COLUMN IF NOT EXISTS search_numbers" in s]
    assert [s.split(" ON CLUSTER")[0] for s in column] == [
        "ALTER TABLE trailhouse.events_local",
        "ALTER TABLE trailhouse.events",
    ]
    index = [s for s in ddl if "ADD INDEX" in s or "MATERIALIZE INDEX" in s or "ttl_only_drop_parts" in s]
    assert index and all(s.startswith("ALTER TABLE trailhouse.events_local ON CLUSTER prod") for s in index)


def test_the_event_numbers_view_feeds_each_nodes_rows_and_the_backfill_goes_through_the_distributed_tables():
    ddl = [" ".join(s.split()) for s in statements(CLUSTER)]
    local = _one(ddl, "CREATE TABLE IF NOT EXISTS trailhouse.event_numbers_local ON CLUSTER prod (")
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', ingest_time)"
        in (local)
    )
    assert "ORDER BY (number, event_time, recipient_account_id, event_id)" in local
    assert "Distributed('prod', 'trailhouse', 'event_numbers_local', cityHash64(event_id))" in _one(
        ddl, "CREATE TABLE IF NOT EXISTS trailhouse.event_numbers ON CLUSTER"
    )
    view = _one(ddl, "CREATE MATERIALIZED VIEW IF NOT EXISTS trailhouse.event_numbers_mv")
    assert view.startswith(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS trailhouse.event_numbers_mv ON CLUSTER prod "
        "TO trailhouse.event_numbers_local AS SELECT arrayJoin(search_numbers) AS number"
    )
    assert view.endswith("FROM trailhouse.events_local")
    backfill = _one(ddl, "INSERT INTO trailhouse.event_numbers ")
    assert "SETTINGS distributed_foreground_insert = 1 SELECT" in backfill
    assert backfill.endswith("FROM trailhouse.events")
    assert ddl.index(view) < ddl.index(backfill)  # nothing stored between the two is missed


def test_views_read_the_distributed_table_on_a_cluster():
    ddl = [" ".join(s.split()) for s in statements(CLUSTER)]
    views = [s for s in ddl if s.startswith("CREATE OR REPLACE VIEW")]
    assert len(views) == 3
    assert all("ON CLUSTER prod" in v and "FROM trailhouse.events FINAL" in v for v in views)


def test_retention_alters_the_tables_that_hold_the_rows():
    assert [" ".join(s.split()) for s in retention_statements(CLUSTER, 400, {})] == [
        "ALTER TABLE trailhouse.events_local ON CLUSTER prod MODIFY TTL toDateTime(event_time) + toIntervalDay(400)",
        "ALTER TABLE trailhouse.alerts_local ON CLUSTER prod MODIFY TTL toDateTime(alert_time) + toIntervalDay(400)",
        "ALTER TABLE trailhouse.insights_local ON CLUSTER prod MODIFY TTL toDateTime(event_time) + toIntervalDay(400)",
        "ALTER TABLE trailhouse.event_numbers_local ON CLUSTER prod MODIFY TTL toDateTime(event_time) "
        "+ toIntervalDay(400)",
    ]
    current = {"events": "toDateTime(event_time) + toIntervalDay(400)", "alerts": None, "insights": None}
    assert [s.split()[2] for s in retention_statements(Layout("t"), 0, current)] == ["t.events"]
    assert retention_statements(Layout("t"), 400, current)[0].endswith(
        "MODIFY TTL toDateTime(alert_time) + toIntervalDay(400)"
    )


@pytest.mark.parametrize("layout", [Layout("trailhouse"), CLUSTER, Layout("trailhouse", cluster="eu-prod_2")])
def test_every_statement_is_valid_clickhouse_sql(clickhouse, layout):
    for sql in [*statements(layout), *retention_statements(layout, 400, {})]:
        clickhouse.query("SELECT formatQuery({sql:String})", parameters={"sql": sql})


@pytest.mark.parametrize(("database", "cluster"), [("trail house", None), ("t", "prod;DROP"), ("t", "a b")])
def test_names_that_could_break_the_ddl_are_refused(database, cluster):
    with pytest.raises(ConfigError):
        Layout(database, cluster)
