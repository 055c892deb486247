"""The detector over its tables, a batch of chunks at a time: the same insights and stored state as chunk by chunk,
stored only when asked, and chunks read again after a restart skipped."""

import json

from streams.detection import DetectionBatch
from streams.insights import MINUTE_MS, Sensitivity

SOURCE = "cloudtrail-111122223333-us-east-1"
T0 = 29_000_000  # an epoch minute
S = Sensitivity(min_history_minutes=12 * 60, lateness_minutes=10)


def _event(minute: int, name: str = "CreateAccessKey") -> dict:
    return {
        "management_event": True,
        "event_category": "Management",
        "aws_region": "us-east-1",
        "event_source": "iam.amazonaws.com",
        "event_name": name,
        "read_only": False,
        "error_code": None,
        "event_time": minute * MINUTE_MS,
        "user_arn": "arn:aws:iam::111122223333:user/ci",
        "user_agent": "aws-cli/2",
    }


def _chunks() -> list[list[dict]]:
    """10-minute chunks: 14 h of 2 calls a minute, a 5-minute burst of 60, quiet, then one call 8 days later of
    another API (the first is forgotten: silent for a week)."""
    counts = {T0 + m: 2 for m in range(14 * 60)} | {T0 + 14 * 60 + m: 60 for m in range(5)}
    counts[T0 + 15 * 60] = 1
    counts[T0 + 16 * 60] = 1
    events = [_event(minute) for minute, n in sorted(counts.items()) for _ in range(n)]
    chunks = [[e for e in events if (e["event_time"] // MINUTE_MS - T0) // 10 == c] for c in range(16 * 6 + 1)]
    return [c for c in chunks if c] + [
        [_event(T0 + 8 * 1440, "DeleteUser")],
        [_event(T0 + 8 * 1440 + 30, "DeleteUser")],
    ]


def _run(batch_size: int) -> tuple[list[dict], dict, dict]:
    heads: dict = {}
    apis: dict = {}
    insights = []
    chunks = _chunks()
    for first in range(0, len(chunks), batch_size):
        batch = DetectionBatch(heads, apis, S)
        for offset in range(first, min(first + batch_size, len(chunks))):
            insights += batch.detect(SOURCE, chunks[offset], offset, message=f"raw/0/{offset}")
        batch.store(lambda message: None)
    return insights, heads, apis


def test_a_batch_of_chunks_gives_the_insights_and_tables_of_chunk_by_chunk():
    one_by_one = _run(1)
    insights, heads, apis = one_by_one
    assert [(i["state"], i["event_name"]) for i in insights] == [
        ("Start", "CreateAccessKey"),
        ("End", "CreateAccessKey"),
    ]
    assert json.loads(json.dumps(_run(7), default=str)) == json.loads(json.dumps(one_by_one, default=str))
    assert heads[SOURCE]["applied"] == len(_chunks()) - 1
    assert list(apis) == [f"{SOURCE}|ApiCallRateInsight|us-east-1|iam.amazonaws.com|DeleteUser|"], (
        "the API silent for a week was deleted"
    )


def test_the_tables_are_written_by_store_alone_with_each_source_last_message():
    heads: dict = {}
    apis: dict = {}
    batch = DetectionBatch(heads, apis, S)
    chunks = _chunks()
    batch.detect(SOURCE, chunks[0], 0, message="raw/0/0")
    batch.detect(SOURCE, chunks[1], 1, message="raw/0/1")
    assert heads == {} and apis == {}
    processed = []
    batch.store(processed.append)
    assert processed == ["raw/0/1"] and heads[SOURCE]["applied"] == 1 and apis


def test_chunks_read_again_after_a_restart_are_skipped():
    insights, heads, apis = _run(5)
    again = DetectionBatch(heads, apis, S)
    assert again.detect(SOURCE, _chunks()[84], 84, message="raw/0/84") == []
    again.store(lambda message: None)
    assert json.loads(json.dumps(heads)) == json.loads(json.dumps(_run(5)[1]))


def _as_before_the_ring(api: dict) -> dict:
    """An API entry as a worker before the ring stored it: hours as a dict of str(hour) -> totals, via JSON."""
    ring, newest = api["hours"], api["newest"]
    hours = {str(h): ring[3 * (h % 168) : 3 * (h % 168) + 3] for h in range(newest - 167, newest + 1)}
    old = {k: v for k, v in api.items() if k != "newest"} | {"hours": {h: t for h, t in hours.items() if any(t)}}
    return json.loads(json.dumps(old))


def test_tables_stored_before_the_ring_give_the_same_insights_and_tables():
    """A worker upgraded halfway through, on tables an older worker wrote: nothing changes but the form."""
    expected = _run(5)
    heads: dict = {}
    apis: dict = {}
    insights = []
    chunks = _chunks()
    for first in range(0, len(chunks), 5):
        if first == 50:
            apis = {key: _as_before_the_ring(api) for key, api in apis.items()}
            assert all(isinstance(api["hours"], dict) for api in apis.values()) and apis
        batch = DetectionBatch(heads, apis, S)
        for offset in range(first, min(first + 5, len(chunks))):
            insights += batch.detect(SOURCE, chunks[offset], offset, message=f"raw/0/{offset}")
        batch.store(lambda message: None)

    assert insights == expected[0]
    assert json.loads(json.dumps((heads, apis))) == json.loads(json.dumps(expected[1:]))
