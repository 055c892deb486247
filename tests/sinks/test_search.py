"""Search against the real ClickHouse engine (chDB): content, not only counts, and hostile input."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from sinks.clickhouse import insert
from sinks.search import SearchQuery, count, numbers_table_where, parse_query, search
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
    *(  # digits runs longer than an account number, and numbers inside other text
        (f"num-{i}", json.dumps({"eventID": f"num-{i}", "eventTime": f"2023-07-09T10:00:0{i}Z", "note": note}))
        for i, note in enumerate(
            [
                "ts 16888888888881234 end",
                "arn:aws:iam::999988887777:role/x and 555566667777",
                "key AKIA999988887777ZZ",
                "short 12345678901 only",
            ]
        )
    ),
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


def _glob(pattern: str) -> re.Pattern[str]:
    """What a free term means, as a Python regex: the glob anywhere in the record text."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.S)


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


def test_a_page_spanning_several_days_is_the_newest_events_in_order(clickhouse, settings, real_records):
    newest = datetime(2023, 7, 10, 13, tzinfo=UTC)
    events = [
        enrich(json.dumps(r | {"eventTime": f"{newest - timedelta(hours=7 * i):%Y-%m-%dT%H:%M:%SZ}"}), CTX)
        for i, r in enumerate(real_records[:20])
    ]
    spec = events_table()
    insert(clickhouse, f"{settings.clickhouse_database}.events", spec.columns, spec.to_columns(events[::-1]))

    found = search(clickhouse, settings.clickhouse_database, SearchQuery(parse_query("*")), limit=10)

    assert [e["event_id"] for e in found] == [e["event_id"] for e in events[:10]]  # 4 from the newest day, 6 before


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


@pytest.mark.parametrize(
    "pattern",
    [
        "*123837392027*",  # an account of the real data, answered by the index alone
        "123837392027",
        "*888888888123*",  # a window inside a 17-digit run
        "*16888888888881234*",  # the whole run
        "*6888888888881234*",
        "*8888888888812345*",  # longer than any run: no match
        "*999988887777*",  # inside an ARN and inside an access key id
        "iam::999988887777:role*",
        "*99998888777?*",  # a wildcard cuts the digits: searched without the index
        "*12345678901*",  # 11 digits: too short for the index
        "*555555555555*",  # a miss
    ],
)
def test_number_searches_mean_the_same_as_substring_search(loaded, all_texts, pattern):
    expected = {event_id for event_id, text in all_texts if _glob(pattern).search(text)}
    assert _ids(loaded, pattern) == expected
    assert count(loaded[0], loaded[1], SearchQuery(parse_query(pattern))) == len(expected)


@pytest.mark.parametrize(
    ("text", "filters"),
    [
        ("*123837392027*", {}),
        ("123837392027 eventName:Get*", {}),
        ("*123837392027* NOT eventName:Get*", {}),
        ("*123837392027* source:cloudtrail-*", {}),
        ("*123837392027*", {"regions": ("us-east-1",), "since": datetime(2023, 7, 10, 12, 30, tzinfo=UTC)}),
        ("*123837392027*", {"accounts": ("123837392027",), "until": datetime(2023, 7, 10, 12, 30, tzinfo=UTC)}),
        ("*999988887777*", {}),
        ("*555555555555*", {}),
    ],
)
def test_the_event_numbers_table_answers_as_the_events_table_does(loaded, text, filters):
    client, db = loaded
    query = SearchQuery(parse_query(text), **filters)
    assert numbers_table_where(query) is not None
    for with_record in (False, True):
        for limit in (3, 10_000):
            fast = search(client, db, query, limit=limit, with_record=with_record)
            slow = search(client, db, query, limit=limit, with_record=with_record, number_table=False)
            assert fast == slow, (text, filters, with_record, limit)
    assert count(client, db, query) == count(client, db, query, number_table=False)


@pytest.mark.parametrize(
    "text", ["*123837392027* *Get*", "*123837392027* *218007301253*", "*1238373920271*", "NOT *123837392027*", "*"]
)
def test_queries_the_event_numbers_table_cannot_answer_take_the_general_path(text):
    assert numbers_table_where(SearchQuery(parse_query(text))) is None


def test_not_excludes_what_its_term_matches(loaded, real_records):
    everything = {r["eventID"] for r in real_records if "123837392027" in json.dumps(r)}
    gets = {r["eventID"] for r in real_records if r["eventName"].startswith("Get")}
    assert _ids(loaded, "*123837392027* NOT eventName:Get*") == everything - gets
    assert _ids(loaded, "NOT *123837392027* eventName:Get*") == gets - everything
    assert _ids(loaded, '"NOT"') == {r["eventID"] for r in real_records if "NOT" in json.dumps(r)}


def test_account_region_and_source_narrow_a_search(loaded, all_texts):
    events = [enrich(text, CTX) for _, text in all_texts]
    accounts = {e["recipient_account_id"] for e in events}
    assert len(accounts) > 1
    for account in accounts:
        expected = {e["event_id"] for e in events if e["recipient_account_id"] == account}
        assert _ids(loaded, "*", accounts=(account,)) == expected
    assert _ids(loaded, "*", accounts=tuple(accounts)) == {e["event_id"] for e in events}
    in_region = {e["event_id"] for e in events if e["aws_region"] == "us-east-1"}
    assert _ids(loaded, "*", regions=("us-east-1",)) == in_region
    assert _ids(loaded, "*", sources=(CTX.source_id,), regions=("eu-west-3",)) == set()


def _copy(event: dict, **changes) -> dict:
    return event | changes


def test_an_event_stored_twice_shows_once_as_its_newest_copy(clickhouse, settings, real_records):
    spec = events_table()
    table = f"{settings.clickhouse_database}.events"
    newest_first = sorted(
        (enrich(json.dumps(r), CTX) for r in real_records[:40]), key=lambda e: (-e["event_time"], e["event_id"])
    )
    insert(clickhouse, table, spec.columns, spec.to_columns(newest_first))
    moved, stayed = newest_first[:30], newest_first[30:]
    newer = [_copy(e, ingest_time=e["ingest_time"] + 1000, source_id="cloudtrail-org") for e in moved]
    insert(clickhouse, table, spec.columns, spec.to_columns(newer))
    db = settings.clickhouse_database

    found = search(clickhouse, db, SearchQuery(parse_query("*")), limit=100)
    assert [e["event_id"] for e in found] == [e["event_id"] for e in newest_first]
    assert [e["source_id"] for e in found] == ["cloudtrail-org"] * 30 + [CTX.source_id] * 10
    assert count(clickhouse, db, SearchQuery(parse_query("*"))) == 40
    # The 30 newest events have an older copy that says CTX's source, but an event is what its newest copy says:
    # the search looks past them however many there are.
    old_source = SearchQuery(parse_query(f"source:{CTX.source_id}"))
    assert [e["event_id"] for e in search(clickhouse, db, old_source, limit=5)] == [e["event_id"] for e in stayed[:5]]
    assert count(clickhouse, db, old_source) == 10
    # The same through the event_numbers table: an account number and a per-copy condition.
    account = stayed[0]["recipient_account_id"]
    for source, events in (("cloudtrail-org", moved), (CTX.source_id, stayed)):
        query = SearchQuery(parse_query(f"*{account}* source:{source}"))
        assert numbers_table_where(query) is not None
        expected = [e["event_id"] for e in events if e["recipient_account_id"] == account]
        assert expected and [e["event_id"] for e in search(clickhouse, db, query, limit=100)] == expected
        assert [e["event_id"] for e in search(clickhouse, db, query, limit=2)] == expected[:2]
        assert count(clickhouse, db, query) == len(expected)
