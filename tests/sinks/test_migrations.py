"""Migrations and retention against the real ClickHouse engine (chDB): from empty, from a previous version, from
several processes at once."""

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from sinks.clickhouse import connect, insert
from sinks.ddl import Layout
from sinks.migrations import MIGRATIONS, applied_versions, migrate
from sinks.retention import apply_retention, current_ttls
from sinks.search import SearchQuery, count, numbers_table_where, parse_query, search
from sinks.tables import events_table, sink_tables
from streams.enrich import FileContext, enrich

CTX = FileContext("cloudtrail-218007301253-us-east-1", "k", "218007301253", "us-east-1", 1_800_000_000_000)
LATEST = MIGRATIONS[-1].version


@pytest.fixture
def empty(chdb_dsn, settings):
    """A client and the layout of a database that does not exist yet."""
    client = connect(chdb_dsn)
    yield client, Layout(settings.clickhouse_database)
    client.command(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")


def _objects(client, database):
    rows = client.query(
        "SELECT name, engine FROM system.tables WHERE database = {db:String}", parameters={"db": database}
    ).result_rows
    return dict(rows)


def test_from_empty_every_table_and_view_is_created_once(empty):
    client, layout = empty
    assert migrate(client, layout) == [m.version for m in MIGRATIONS]
    assert migrate(client, layout) == []
    assert _objects(client, layout.database) == {
        "events": "ReplacingMergeTree",
        "alerts": "ReplacingMergeTree",
        "insights": "ReplacingMergeTree",
        "event_numbers": "ReplacingMergeTree",
        "event_numbers_mv": "MaterializedView",
        "sources": "ReplacingMergeTree",
        "sink_batches": "ReplacingMergeTree",
        "schema_migrations": "ReplacingMergeTree",
        "events_latest": "View",
        "recent_changes": "View",
        "errors_by_api": "View",
    }
    assert applied_versions(client, layout) == set(range(1, LATEST + 1))


def test_every_sunk_topic_has_a_table_with_a_column_for_each_field_of_its_schema(empty, settings):
    client, layout = empty
    migrate(client, layout)
    for topic, spec in sink_tables(settings).items():
        rows = client.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}",
            parameters={"db": layout.database, "t": spec.table},
        ).result_rows
        missing = set(spec.columns) - {name for (name,) in rows}
        assert not missing, f"{topic} -> {spec.table}: no column for {sorted(missing)}; add them in a migration"


def test_from_a_previous_version_the_data_stays_and_becomes_searchable_the_new_way(empty, real_records):
    client, layout = empty
    assert migrate(client, layout, upto=2) == [1, 2]
    spec = events_table()
    events = [enrich(json.dumps(r), CTX) for r in real_records]
    insert(client, layout.name("events"), spec.columns, spec.to_columns(events))

    assert migrate(client, layout) == list(range(3, LATEST + 1))

    expected = {r["eventID"] for r in real_records if "123837392027" in json.dumps(r)}
    assert expected
    query = SearchQuery(parse_query("*123837392027*"))
    assert numbers_table_where(query) is not None  # answered from event_numbers, filled by the migration
    found = search(client, layout.database, query, limit=10_000, with_record=False)
    assert {e["event_id"] for e in found} == expected
    assert count(client, layout.database, SearchQuery(())) == len(real_records)
    latest = client.query(f"SELECT count() FROM {layout.name('events_latest')}").result_rows[0][0]
    assert latest == len(real_records)


def test_several_sinks_migrating_at_once_end_in_the_same_schema(empty, chdb_dsn):
    _, layout = empty
    results, errors = [], []

    def run():
        try:
            results.append(migrate(connect(chdb_dsn), layout))
        except Exception as exc:  # the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [] and len(results) == 3
    client = connect(chdb_dsn)
    assert applied_versions(client, layout) == set(range(1, LATEST + 1))
    assert migrate(client, layout) == []
    assert len(_objects(client, layout.database)) == 11


def _event(event_id: str, when: datetime) -> dict:
    text = json.dumps({"eventID": event_id, "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "eventName": "X"})
    return enrich(text, CTX)


def test_retention_deletes_by_event_time_and_can_be_lifted(clickhouse, settings):
    layout = Layout(settings.clickhouse_database)
    now = datetime.now(UTC)
    spec = events_table()
    rows = [_event("old", now - timedelta(days=500)), _event("recent", now - timedelta(days=10))]
    insert(clickhouse, layout.name("events"), spec.columns, spec.to_columns(rows))

    assert apply_retention(clickhouse, layout, None) == []  # not configured: nothing changes
    assert len(apply_retention(clickhouse, layout, 400)) == 4
    assert apply_retention(clickhouse, layout, 400) == []  # already so
    assert current_ttls(clickhouse, layout) == {
        "events": "toDateTime(event_time) + toIntervalDay(400)",
        "alerts": "toDateTime(alert_time) + toIntervalDay(400)",
        "insights": "toDateTime(event_time) + toIntervalDay(400)",
        "event_numbers": "toDateTime(event_time) + toIntervalDay(400)",
    }
    for table in ("events", "event_numbers"):
        clickhouse.command(f"OPTIMIZE TABLE {layout.name(table)} FINAL")
        ids = {r[0] for r in clickhouse.query(f"SELECT event_id FROM {layout.name(table)}").result_rows}
        assert ids == ({"recent"} if table == "events" else set()), table  # _event has no 12-digit number

    assert len(apply_retention(clickhouse, layout, 0)) == 4  # forever
    assert current_ttls(clickhouse, layout) == {"events": None, "alerts": None, "insights": None, "event_numbers": None}


def test_the_embedded_sink_tunes_its_tables_as_it_starts(chdb_dsn, settings, topics):
    """The sink sets the engine's settings as it starts; a command that only reads (search, status) leaves the
    tables as they are."""
    from sinks.migrations import prepare
    from trailhouse.stages import sink_stage

    embedded = settings.with_(clickhouse_url=chdb_dsn)
    client, layout = prepare(embedded)
    # Named here, not read from the code under test: every table the sink writes removes its outdated parts in one
    # thread, and the events table merges a column at a time.
    written = ("events", "event_numbers", "sources", "alerts", "insights", "sink_batches")

    def create_query(table: str) -> str:
        return client.query(
            "SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = {table:String}",
            parameters={"db": layout.database, "table": table},
        ).result_rows[0][0]

    try:
        for table in written:
            assert "concurrent_part_removal_threshold" not in create_query(table), table
        assert "vertical_merge_algorithm" not in create_query("events")
        for _ in range(2):  # every start sets them again: no error the second time
            sink = sink_stage(embedded, topics)
            sink.stop()
            sink.run()
        for table in written:
            assert f"concurrent_part_removal_threshold = {2**62}" in create_query(table), table
        events = create_query("events")
        assert "vertical_merge_algorithm_min_rows_to_activate = 1" in events
        assert "vertical_merge_algorithm_min_columns_to_activate = 1" in events
        assert "vertical_merge_algorithm" not in create_query("alerts")
    finally:
        client.command(f"DROP DATABASE IF EXISTS {layout.database}")
