"""Search against the real ClickHouse engine (chDB): content, not only counts, and hostile input."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from sinks.clickhouse import insert
from sinks.search import SearchQuery, count, parse_query, search
from sinks.tables import events_table
from streams.classify import action_class
from streams.enrich import FileContext, enrich

CTX = FileContext("cloudtrail-218007301253-us-east-1", "k", "218007301253", "us-east-1", 1_800_000_000_000)
ODD = [  # as JSON text: ..."note": "50%_off it's a \"quote\" C:\\Users"
    (
        "odd-1",
        json.dumps(
            {"eventID": "odd-1", "eventTime": "2023-07-10T13:00:00Z", "note": '50%_off it\'s a "quote" C:\\Users'}
        ),
    ),
    ("odd-2", json.dumps({"eventID": "odd-2", "eventTime": "2023-07-10T13:00:01Z", "note": "plain"})),
]


@pytest.fixture
def loaded(clickhouse, settings, real_records):
    spec = events_table()
    events = [enrich(json.dumps(r), CTX) for r in real_records] + [enrich(text, CTX) for _, text in ODD]
    insert(clickhouse, f"{settings.clickhouse_database}.events", spec.columns, spec.to_columns(events))
    return clickhouse, settings.clickhouse_database


@pytest.fixture
def all_texts(real_records):
    return [(r["eventID"], json.dumps(r)) for r in real_records] + ODD


def _ids(loaded, text, **kw):
    client, db = loaded
    return {e["event_id"] for e in search(client, db, SearchQuery(parse_query(text), **kw), limit=10_000)}


def test_an_account_number_finds_every_record_that_mentions_it(loaded, real_records):
    expected = {r["eventID"] for r in real_records if "123837392027" in json.dumps(r)}
    assert _ids(loaded, "*123837392027*") == expected
    assert count(loaded[0], loaded[1], SearchQuery(parse_query("*123837392027*"))) == len(expected)


def test_field_terms_are_anchored_and_and_ed(loaded, real_records):
    expected = {
        r["eventID"]
        for r in real_records
        if r["eventName"].startswith("Delete") and r["eventSource"] == "ec2.amazonaws.com"
    }
    assert expected
    assert _ids(loaded, "eventName:Delete* eventSource:ec2.amazonaws.com") == expected
    assert _ids(loaded, "eventName:elete*") == set()


def test_matching_is_case_sensitive_unless_asked(loaded):
    assert _ids(loaded, "*PLAIN*") == set()
    assert _ids(loaded, "*PLAIN*", case_insensitive=True) == {"odd-2"}


def test_time_bounds_select_by_event_time(loaded, real_records):
    since = datetime(2023, 7, 10, 12, 30, tzinfo=UTC)
    expected = {r["eventID"] for r in real_records if r["eventTime"] >= "2023-07-10T12:30:00Z"} | {"odd-1", "odd-2"}
    assert _ids(loaded, "*", since=since) == expected
    assert _ids(loaded, "*", since=since, until=since + timedelta(seconds=1)) == {
        r["eventID"] for r in real_records if r["eventTime"] == "2023-07-10T12:30:00Z"
    }


def test_results_are_newest_first_with_the_original_record(loaded):
    client, db = loaded
    rows = search(client, db, SearchQuery(parse_query("*")), limit=3)
    assert [r["event_id"] for r in rows[:2]] == ["odd-2", "odd-1"]
    assert rows[0]["record"] == ODD[1][1]
    assert rows[0]["event_time"] == datetime(2023, 7, 10, 13, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "literal"),
    [
        ("50%_off", "50%_off"),
        ("%", "%"),
        ("_off", "_off"),
        ("it's", "it's"),
        ("'\\\"quote\\\"'", '\\"quote\\"'),  # quoted: the JSON-escaped quote, as the record text has it
        ("C:\\\\Users", "C:\\\\Users"),
        ('"\'; DROP TABLE events; --"', "'; DROP TABLE events; --"),
        ('"\' OR 1=1 --"', "' OR 1=1 --"),
        ("{p0:String}", "{p0:String}"),
        ("x" * 10_000, "x" * 10_000),
    ],
)
def test_hostile_input_is_only_ever_text(loaded, all_texts, query, literal):
    assert _ids(loaded, query) == {event_id for event_id, record in all_texts if literal in record}
    assert _ids(loaded, "*") >= {"odd-1", "odd-2"}, "the table survived"


def test_analyst_columns_are_searchable(loaded, real_records):
    bucket_calls = {r["eventID"] for r in real_records if "bucketName" in (r.get("requestParameters") or {})}
    assert _ids(loaded, "resource:arn:aws:s3:::*") >= bucket_calls
    deletes = {
        r["eventID"]
        for r in real_records
        if action_class(r["eventName"], r.get("readOnly"), r["eventType"]) == "delete"
    }
    assert any(i in deletes for i in _ids(loaded, "eventName:Delete*")) and _ids(loaded, "action:delete") == deletes
    assert _ids(loaded, "user:bert-jan") == {
        r["eventID"] for r in real_records if r["userIdentity"].get("userName") == "bert-jan"
    }
