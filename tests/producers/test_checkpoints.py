"""The rules that decide where a listing starts and what it publishes (pure, no servers)."""

from datetime import UTC, datetime, timedelta

from producers.checkpoints import Bounds, Checkpoint, is_new, listing_start, past_until
from producers.layout import FileKind, region_prefix

LANE = region_prefix("111122223333", "us-east-1")
INSIGHTS = region_prefix("111122223333", "us-east-1", kind=FileKind.INSIGHT)
HOUR = timedelta(hours=1)


def key(hhmm: str, suffix: str = "a", day: str = "24", lane: str = LANE) -> str:
    kind = "CloudTrail-Insight" if lane == INSIGHTS else "CloudTrail"
    return f"{lane}2026/11/{day}/111122223333_{kind}_us-east-1_202611{day}T{hhmm}Z_{suffix}.json.gz"


def published(checkpoint: Checkpoint, *keys: str, kind: FileKind = FileKind.LOGS) -> Checkpoint:
    for k in keys:
        checkpoint = checkpoint.published(kind, k, records=1, size=10, lookback=HOUR)
    return checkpoint


def test_a_late_file_within_the_window_is_new_and_a_published_one_is_not():
    checkpoint = published(Checkpoint("s"), key("1000"), key("1005"), key("1010"))
    start = listing_start(checkpoint, FileKind.LOGS, LANE, HOUR, Bounds())
    assert start == f"{LANE}2026/11/24/111122223333_CloudTrail_us-east-1_20261124T0910"
    assert start < key("1000") and start < key("0912")
    assert not any(is_new(checkpoint, FileKind.LOGS, k) for k in (key("1000"), key("1005"), key("1010")))
    assert is_new(checkpoint, FileKind.LOGS, key("1003", "late")), "named before the checkpoint, never published"
    assert is_new(checkpoint, FileKind.LOGS, key("1015"))
    assert (checkpoint.files, checkpoint.records, checkpoint.bytes, checkpoint.last_key) == (3, 3, 30, key("1010"))


def test_the_window_forgets_files_older_than_the_look_back_and_the_day_boundary_is_kept():
    checkpoint = published(Checkpoint("s"), key("2250", day="23"), key("2330", day="23"), key("0010", day="24"))
    assert {n[-30:] for n in checkpoint.recent_files} == {
        k[-30:] for k in (key("2330", day="23"), key("0010", day="24"))
    }, "23:30 and 00:10 are within an hour of each other; 22:50 is not"
    start = listing_start(checkpoint, FileKind.LOGS, LANE, HOUR, Bounds())
    assert start.startswith(f"{LANE}2026/11/23/") and start < key("2330", day="23")


def test_each_lane_keeps_its_own_window():
    checkpoint = published(Checkpoint("s"), key("0100", lane=INSIGHTS), kind=FileKind.INSIGHT)
    checkpoint = published(checkpoint, key("0500"), key("0505"))
    assert not is_new(checkpoint, FileKind.INSIGHT, key("0100", lane=INSIGHTS)), (
        "logs four hours later forget no insight"
    )
    assert checkpoint.insight_last_key == key("0100", lane=INSIGHTS) and checkpoint.last_key == key("0505")


def test_a_checkpoint_written_before_the_window_existed_does_not_look_back():
    v1 = Checkpoint("s", last_key=key("1010"), files=3, records=30)
    assert listing_start(v1, FileKind.LOGS, LANE, HOUR, Bounds()) == key("1010")
    assert listing_start(Checkpoint("s"), FileKind.LOGS, LANE, HOUR, Bounds()) == ""


def test_since_and_until_bound_a_backfill():
    since = datetime(2026, 11, 20, tzinfo=UTC)
    bounds = Bounds(since=since, until=datetime(2026, 11, 24, 10, 5, tzinfo=UTC))
    assert listing_start(Checkpoint("s"), FileKind.LOGS, LANE, HOUR, bounds) == f"{LANE}2026/11/20/" + (
        "111122223333_CloudTrail_us-east-1_20261120T0000"
    )
    ahead = published(Checkpoint("s"), key("1000"))
    assert listing_start(ahead, FileKind.LOGS, LANE, HOUR, bounds) < key("1000"), "past `since`: the checkpoint rules"
    assert not past_until(key("1000"), LANE, bounds) and past_until(key("1005"), LANE, bounds)


def test_a_checkpoint_survives_its_avro_record():
    from schemas import Codec

    checkpoint = published(Checkpoint("s", poller="host:1"), key("1000"), key("1005"))
    checkpoint = checkpoint.published(
        FileKind.LOGS, key("1010"), records=0, size=5, lookback=HOUR, dead_letters=1, dead="corrupt gzip"
    )
    codec = Codec.of("Checkpoint")
    assert Checkpoint.from_record(codec.decode(codec.encode(checkpoint.to_record()))) == checkpoint
    assert (checkpoint.dead_letters, checkpoint.last_dead_letter) == (1, "corrupt gzip")


def test_a_version_1_checkpoint_is_still_read():
    import json
    from pathlib import Path

    from fastavro import parse_schema

    from schemas import Codec
    from schemas.codec import SCHEMA_DIR

    v1 = Codec(parse_schema(json.loads((Path(SCHEMA_DIR) / "history" / "checkpoint.v1.avsc").read_text())), [])
    old = v1.encode(
        {
            "source_id": "s",
            "last_key": key("1000"),
            "files": 1,
            "records": 2,
            "last_poll_time": datetime(2026, 1, 1, tzinfo=UTC),
            "last_error": None,
        }
    )
    checkpoint = Checkpoint.from_record(Codec.of("Checkpoint").decode(old))
    assert (checkpoint.last_key, checkpoint.recent_files, checkpoint.dead_letters) == (key("1000"), frozenset(), 0)
