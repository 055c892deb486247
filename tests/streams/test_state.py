from datetime import UTC, datetime

from streams.state import ChunkSummary, apply_chunk, apply_poll, evaluate, new_state, to_record

T0 = int(datetime(2026, 11, 24, 12, 0, tzinfo=UTC).timestamp() * 1000)
MIN = 60_000
WINDOW = 30 * MIN


def _chunk(at: int, events: int = 10, first: bool = True, duplicates: int = 0, dead: int = 0) -> ChunkSummary:
    return ChunkSummary(first, events, duplicates, dead, at, tuple(at - 300_000 - i * 1000 for i in range(events)))


def _poll(at: int, error: str | None = None) -> dict:
    return {"last_poll_time": datetime.fromtimestamp(at / 1000, UTC), "last_error": error}


def test_pending_online_idle_online():
    state = evaluate(new_state("s", T0), T0, WINDOW)
    assert state["status"] == "PENDING"
    state = evaluate(apply_chunk(state, _chunk(T0 + MIN)), T0 + MIN, WINDOW)
    assert (state["status"], state["status_since"]) == ("ONLINE", T0 + MIN)
    state = evaluate(state, T0 + 20 * MIN, WINDOW)
    assert (state["status"], state["status_since"]) == ("ONLINE", T0 + MIN), "no change, no new status_since"
    state = evaluate(state, T0 + 32 * MIN, WINDOW)
    assert (state["status"], state["status_since"]) == ("IDLE", T0 + 32 * MIN)
    state = evaluate(apply_chunk(state, _chunk(T0 + 40 * MIN)), T0 + 40 * MIN, WINDOW)
    assert state["status"] == "ONLINE"


def test_a_failing_poll_is_error_until_a_poll_succeeds():
    state = evaluate(apply_chunk(new_state("s", T0), _chunk(T0)), T0, WINDOW)
    state = evaluate(apply_poll(state, _poll(T0 + MIN, "s3://b: access denied")), T0 + MIN, WINDOW)
    assert (state["status"], state["last_error"], state["poll_errors_total"]) == ("ERROR", "s3://b: access denied", 1)
    assert evaluate(state, T0 + 90 * MIN, WINDOW)["status"] == "ERROR", "silence does not hide an error"
    stale = apply_poll(state, _poll(T0, None))
    assert stale["poll_failing"], "an outcome older than the last one is ignored"
    state = evaluate(apply_poll(state, _poll(T0 + 2 * MIN, None)), T0 + 2 * MIN, WINDOW)
    assert state["status"] == "ONLINE"
    assert state["last_error"] == "s3://b: access denied", "the last error stays visible after recovery"


def test_a_source_whose_first_poll_fails_is_error_then_pending():
    state = evaluate(apply_poll(new_state("s", T0), _poll(T0, "no such bucket")), T0, WINDOW)
    assert state["status"] == "ERROR"
    assert evaluate(apply_poll(state, _poll(T0 + MIN)), T0 + MIN, WINDOW)["status"] == "PENDING"


def test_counters_lag_and_last_hour():
    state = new_state("s", T0)
    state = apply_chunk(state, _chunk(T0, events=5, duplicates=2, dead=1))
    state = apply_chunk(state, _chunk(T0 + 10_000, events=3, first=False))
    state = apply_chunk(state, _chunk(T0 + 70 * MIN, events=4))
    record = to_record(evaluate(state, T0 + 70 * MIN, WINDOW), T0 + 70 * MIN)
    assert (record["events_total"], record["files_total"], record["duplicates_total"]) == (12, 2, 2)
    assert (record["dead_letters_total"], record["errors_total"]) == (1, 1)
    assert record["events_last_hour"] == 4, "chunks older than an hour no longer count"
    assert record["first_event_time"] == T0 - 300_000 - 4_000
    assert record["last_event_time"] == T0 + 70 * MIN - 300_000
    assert 300 <= record["lag_p50_seconds"] <= record["lag_p95_seconds"] <= 305
    assert "cloudtrail.dlq" in record["last_error"]


def test_files_the_poller_dead_lettered_count_as_errors_without_error_status():
    state = evaluate(apply_chunk(new_state("s", T0), _chunk(T0)), T0, WINDOW)
    bad = "corrupt gzip: the compressed stream is truncated (s3://b/AWSLogs/.../a.json.gz)"
    outcome = _poll(T0 + MIN) | {"dead_letters": 2, "last_dead_letter": bad}
    state = evaluate(apply_poll(state, outcome), T0 + MIN, WINDOW)
    assert (state["status"], state["dead_letters_total"], state["last_error"]) == ("ONLINE", 2, bad)
    assert to_record(state, T0 + MIN)["errors_total"] == 2
    again = apply_poll(state, _poll(T0 + MIN) | {"dead_letters": 2, "last_dead_letter": bad})
    assert again["dead_letters_total"] == 2, "the same checkpoint read again (a window, a restart) counts nothing"
    state = apply_poll(state, _poll(T0 + 2 * MIN) | {"dead_letters": 3, "last_dead_letter": bad})
    assert state["dead_letters_total"] == 3
