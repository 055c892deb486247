"""The poller against a real S3 endpoint (moto server) and a real broker (Tansu)."""

import gzip
import json

import pytest

from producers.credentials import AwsClients
from producers.poller import Poller
from schemas import Codec
from tests.conftest import REAL_DATA_PREFIX, lay_out_real_files
from trailhouse.generate import folder_writer
from trailhouse.kafka import CompactedTable, read_to_end
from trailhouse.registry import Registry
from trailhouse.sources import new_source


def _raw_batches(settings, topics):
    codec = Codec.of("RawBatch")
    return [codec.decode(v) for _, v in read_to_end(settings, topics, settings.topic_raw)]


def _dead_letters(settings, topics):
    codec = Codec.of("DeadLetter")
    return [codec.decode(v) for _, v in read_to_end(settings, topics, settings.topic_dlq)]


def test_new_files_are_published_once_with_their_original_records(s3, topics, settings, real_files):
    client, bucket = s3
    files = real_files[:5]
    lay_out_real_files(files, lambda key, body: client.put_object(Bucket=bucket, Key=key, Body=body))
    client.put_object(Bucket=bucket, Key="AWSLogs/218007301253/CloudTrail/README.txt", Body=b"not a log")
    source = new_source("218007301253", "us-east-1", f"s3://{bucket}")
    Registry(settings, topics).add(source)
    poller = Poller(settings, topics, AwsClients(settings))

    report = poller.poll_once()

    assert (report.files, report.failed) == (5, [])
    batches = _raw_batches(settings, topics)
    assert [b["object_key"] for b in batches] == [REAL_DATA_PREFIX + f.name + ".gz" for f in files]
    for batch, path in zip(batches, files, strict=True):
        assert [json.loads(r) for r in batch["records"]] == json.loads(path.read_text())["Records"]
        assert (batch["source_id"], batch["account"], batch["region"]) == (
            source.source_id,
            "218007301253",
            "us-east-1",
        )
        assert (batch["chunk_index"], batch["chunk_count"]) == (0, 1)
    assert report.records == sum(len(b["records"]) for b in batches)

    assert poller.poll_once().files == 0, "a second poll publishes nothing new"
    lay_out_real_files(real_files[5:6], lambda key, body: client.put_object(Bucket=bucket, Key=key, Body=body))
    assert poller.poll_once().files == 1
    assert len(_raw_batches(settings, topics)) == 6

    checkpoint = CompactedTable(settings, topics, settings.topic_checkpoints, Codec.of("Checkpoint")).read()
    assert checkpoint[source.source_id]["last_key"] == REAL_DATA_PREFIX + real_files[5].name + ".gz"
    assert checkpoint[source.source_id]["files"] == 6


def test_a_corrupt_file_goes_to_the_dead_letter_topic_and_the_next_file_still_flows(s3, topics, settings, real_files):
    client, bucket = s3
    prefix = "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/11/24/"
    client.put_object(
        Bucket=bucket,
        Key=prefix + "111122223333_CloudTrail_eu-west-1_20261124T0000Z_a.json.gz",
        Body=gzip.compress(b'{"Records": [')[:-4],
    )
    client.put_object(
        Bucket=bucket,
        Key=prefix + "111122223333_CloudTrail_eu-west-1_20261124T0005Z_b.json.gz",
        Body=gzip.compress(real_files[0].read_bytes()),
    )
    Registry(settings, topics).add(new_source("111122223333", "eu-west-1", f"s3://{bucket}"))

    report = Poller(settings, topics, AwsClients(settings)).poll_once()

    assert report.sources[0].dead_letters == 1
    [dead] = _dead_letters(settings, topics)
    assert dead["error_type"] == "corrupt_gzip" and dead["stage"] == "poll"
    assert dead["location"] == f"s3://{bucket}/{prefix}111122223333_CloudTrail_eu-west-1_20261124T0000Z_a.json.gz"
    assert [b["object_key"].rsplit("_", 1)[1] for b in _raw_batches(settings, topics)] == ["b.json.gz"]


def test_a_missing_bucket_marks_the_source_in_error_and_others_still_poll(s3, topics, settings, real_files):
    client, bucket = s3
    lay_out_real_files(real_files[:1], lambda key, body: client.put_object(Bucket=bucket, Key=key, Body=body))
    registry = Registry(settings, topics)
    registry.add(new_source("111122223333", "us-east-1", "s3://no-such-bucket-here"))
    registry.add(new_source("218007301253", "us-east-1", f"s3://{bucket}"))

    report = Poller(settings, topics, AwsClients(settings)).poll_once()

    [failed] = report.failed
    assert failed.source_id == "cloudtrail-111122223333-us-east-1"
    assert "no such bucket" in failed.error
    assert report.files == 1
    checkpoints = CompactedTable(settings, topics, settings.topic_checkpoints, Codec.of("Checkpoint")).read()
    assert "no such bucket" in checkpoints["cloudtrail-111122223333-us-east-1"]["last_error"]


def test_a_local_folder_is_read_like_a_bucket(tmp_path, topics, settings, real_files):
    root = tmp_path / "bucket"
    lay_out_real_files(real_files[:3], folder_writer(root))
    Registry(settings, topics).add(new_source("218007301253", "us-east-1", f"file://{root}"))
    poller = Poller(settings, topics, AwsClients(settings))

    assert poller.poll_once().files == 3
    assert poller.poll_once().files == 0
    assert sum(len(b["records"]) for b in _raw_batches(settings, topics)) == sum(
        len(json.loads(f.read_text())["Records"]) for f in real_files[:3]
    )


# --- issue 3: late files, layouts, digests and Insights, bad input, access, backfill, restarts --------------------

ACCOUNT = "111122223333"


def _key(hhmm: str, suffix: str, *, kind: str = "CloudTrail", region: str = "us-east-1", head: str = "") -> str:
    return (
        f"{head}AWSLogs/{ACCOUNT}/{kind}/{region}/2026/11/24/"
        f"{ACCOUNT}_{kind}_{region}_20261124T{hhmm}Z_{suffix}.json.gz"
    )


def _body(*event_ids: str, **extra) -> bytes:
    records = [{"eventVersion": "1.08", "eventID": e, "eventName": "GetObject", **extra} for e in event_ids]
    return gzip.compress(json.dumps({"Records": records}).encode())


def _published_keys(settings, topics) -> list[str]:
    return [b["object_key"] for b in _raw_batches(settings, topics) if b["chunk_index"] == 0]


def _checkpoints(settings, topics):
    return CompactedTable(settings, topics, settings.topic_checkpoints, Codec.of("Checkpoint")).read()


def test_late_file_is_ingested_once(s3, topics, settings):
    client, bucket = s3
    put = lambda key, body: client.put_object(Bucket=bucket, Key=key, Body=body)  # noqa: E731
    for hhmm in ("1000", "1005", "1010"):
        put(_key(hhmm, "a"), _body(f"e-{hhmm}"))
    Registry(settings, topics).add(new_source(ACCOUNT, "us-east-1", f"s3://{bucket}"))
    poller = Poller(settings, topics, AwsClients(settings))
    assert poller.poll_once().files == 3

    put(_key("1003", "late"), _body("e-late"))  # delivered after 10:10, named 10:03: sorts before the checkpoint
    put(_key("0850", "too-late"), _body("e-too-late"))  # older than the look-back window (1 h before 10:10)
    put(_key("1015", "a"), _body("e-1015"))
    assert poller.poll_once().files == 2
    assert poller.poll_once().files == 0, "both passes see the late file again; it is not published again"
    keys = _published_keys(settings, topics)
    assert sorted(keys) == sorted({*keys}) and _key("1003", "late") in keys and _key("1015", "a") in keys
    assert _key("0850", "too-late") not in keys, "beyond poll_lookback a late file is not looked for"
    assert _checkpoints(settings, topics)[f"cloudtrail-{ACCOUNT}-us-east-1"]["last_key"] == _key("1015", "a")


def test_an_organization_trail_with_a_prefix_is_polled(s3, topics, settings):
    client, bucket = s3
    org_key = "trails/AWSLogs/o-a1b2c3d4e5/" + _key("1000", "org").removeprefix("AWSLogs/")
    client.put_object(Bucket=bucket, Key=org_key, Body=_body("org-1", "org-2"))
    client.put_object(Bucket=bucket, Key=_key("1000", "not-org"), Body=_body("x"))  # another trail's layout
    Registry(settings, topics).add(
        new_source(ACCOUNT, "us-east-1", f"s3://{bucket}", prefix="trails", org_id="o-a1b2c3d4e5")
    )
    report = Poller(settings, topics, AwsClients(settings)).poll_once()
    assert (report.files, report.records) == (1, 2)
    [batch] = _raw_batches(settings, topics)
    assert (batch["object_key"], batch["account"], batch["region"]) == (org_key, ACCOUNT, "us-east-1")


AWS_INSIGHT = {  # as AWS delivers it in CloudTrail-Insight/ (an ApiCallRateInsight's Start)
    "eventVersion": "1.08",
    "eventTime": "2026-11-24T09:58:00Z",
    "awsRegion": "us-east-1",
    "eventID": "2cb8a9b1-4b2b-4c1a-9b6f-000000000001",
    "eventType": "AwsCloudTrailInsight",
    "recipientAccountId": ACCOUNT,
    "sharedEventID": "7d2f6a3e-9b7c-4c55-8a1e-000000000002",
    "insightDetails": {
        "state": "Start",
        "eventSource": "ec2.amazonaws.com",
        "eventName": "RunInstances",
        "insightType": "ApiCallRateInsight",
        "insightContext": {
            "statistics": {
                "baseline": {"average": 0.0655555556},
                "insight": {"average": 12.0},
                "baselineDuration": 10080,
            },
            "attributions": [{"attribute": "userAgent", "insight": [], "baseline": []}],
        },
    },
    "eventCategory": "Insight",
}


def test_digest_files_are_skipped_and_aws_insights_are_published_as_aws_made(s3, topics, settings):
    client, bucket = s3
    digest = (
        f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/2026/11/24/"
        f"{ACCOUNT}_CloudTrail-Digest_us-east-1_trail_us-east-1_20261124T100000Z.json.gz"
    )
    client.put_object(Bucket=bucket, Key=digest, Body=gzip.compress(b'{"digestEndTime": "x", "logFiles": []}'))
    client.put_object(Bucket=bucket, Key=_key("1000", "a"), Body=_body("e-1"))
    original = json.dumps({"Records": [AWS_INSIGHT, {"eventID": "not-an-insight"}]}, indent=1)  # AWS's spacing kept
    insight_key = _key("1005", "i", kind="CloudTrail-Insight")
    client.put_object(Bucket=bucket, Key=insight_key, Body=gzip.compress(original.encode()))
    Registry(settings, topics).add(new_source(ACCOUNT, "us-east-1", f"s3://{bucket}"))
    poller = Poller(settings, topics, AwsClients(settings))

    report = poller.poll_once()
    assert (report.files, report.sources[0].insights, report.sources[0].dead_letters) == (2, 1, 1)
    assert _published_keys(settings, topics) == [_key("1000", "a")], "neither the digest nor the insight is an event"
    [(key, value)] = read_to_end(settings, topics, settings.topic_insights)
    insight = Codec.of("Insight").decode(value)  # the schema the worker's detector writes to the same topic
    assert key == f"cloudtrail-{ACCOUNT}-us-east-1".encode()
    assert (
        insight["aws_made"] is True and insight["record"] in original and json.loads(insight["record"]) == AWS_INSIGHT
    )
    assert {k: insight[k] for k in ("event_id", "shared_event_id", "state", "insight_type", "event_name")} == {
        "event_id": AWS_INSIGHT["eventID"],
        "shared_event_id": AWS_INSIGHT["sharedEventID"],
        "state": "Start",
        "insight_type": "ApiCallRateInsight",
        "event_name": "RunInstances",
    }
    assert (insight["baseline_average"], insight["insight_average"], insight["baseline_duration"]) == (
        0.0655555556,
        12.0,
        10080,
    )
    [dead] = _dead_letters(settings, topics)
    assert dead["location"] == f"s3://{bucket}/{insight_key}#record1" and dead["error_type"] == "not_an_insight"
    assert "no insightDetails" in dead["reason"] or "no eventTime" in dead["reason"]
    assert poller.poll_once().files == 0
    checkpoint = _checkpoints(settings, topics)[f"cloudtrail-{ACCOUNT}-us-east-1"]
    assert (checkpoint["insight_last_key"], checkpoint["dead_letters"]) == (insight_key, 1)


def test_each_unreadable_file_is_one_dead_letter_and_the_checkpoint_moves_on(s3, topics, settings):
    client, bucket = s3
    settings = settings.with_(max_file_bytes=100_000)
    bad = {
        _key("1000", "gzip"): (gzip.compress(b'{"Records": [')[:-4], "corrupt_gzip"),
        _key("1001", "json"): (gzip.compress(b"<html>AccessDenied</html>"), "not_json"),
        _key("1002", "records"): (gzip.compress(b'{"digestEndTime": "2026-11-24"}'), "no_records"),
        _key("1003", "size"): (_body(*(f"e{i:06d}" for i in range(3000))), "file_too_large"),
    }
    for key, (body, _) in bad.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    client.put_object(Bucket=bucket, Key=_key("1004", "good"), Body=_body("good"))
    Registry(settings, topics).add(new_source(ACCOUNT, "us-east-1", f"s3://{bucket}"))

    report = Poller(settings, topics, AwsClients(settings)).poll_once()

    assert (report.files, report.records, report.sources[0].dead_letters, report.failed) == (5, 1, 4, [])
    dead = {d["location"].removeprefix(f"s3://{bucket}/"): d for d in _dead_letters(settings, topics)}
    assert {k: d["error_type"] for k, d in dead.items()} == {k: kind for k, (_, kind) in bad.items()}
    assert all(d["payload_size"] == len(bad[k][0]) for k, d in dead.items())
    checkpoint = _checkpoints(settings, topics)[f"cloudtrail-{ACCOUNT}-us-east-1"]
    assert (checkpoint["last_key"], checkpoint["dead_letters"], checkpoint["last_error"]) == (
        _key("1004", "good"),
        4,
        None,
    )
    assert "max_file_bytes" in checkpoint["last_dead_letter"] and _key("1003", "size") in checkpoint["last_dead_letter"]


def test_access_denied_puts_one_source_in_error_others_go_on_and_it_recovers_by_itself(s3, topics, settings):
    from tests.producers.faults import Faults

    client, bucket = s3
    client.put_object(Bucket=bucket, Key=_key("1000", "a"), Body=_body("a"))
    other = f"AWSLogs/{ACCOUNT}/CloudTrail/eu-west-1/2026/11/24/{ACCOUNT}_CloudTrail_eu-west-1_20261124T1000Z_b.json.gz"
    client.put_object(Bucket=bucket, Key=other, Body=_body("b"))
    denied = new_source(ACCOUNT, "us-east-1", f"s3://{bucket}", role_arn="arn:aws:iam::111122223333:role/reader")
    Registry(settings, topics).add(denied)
    Registry(settings, topics).add(new_source(ACCOUNT, "eu-west-1", f"s3://{bucket}"))
    clients = AwsClients(settings)
    faults = Faults(clients.s3(denied)).fail("GetObject", "AccessDenied")  # the role may list, not read
    poller = Poller(settings, topics, clients)

    report = poller.poll_once()
    [failed] = report.failed
    assert failed.source_id == denied.source_id and "access denied (AccessDenied)" in failed.error
    assert "s3:GetObject" in failed.error and report.files == 1, "the other source was polled"
    assert "s3:GetObject" in _checkpoints(settings, topics)[denied.source_id]["last_error"]

    faults.clear()  # access granted
    report = poller.poll_once()
    assert (report.failed, report.files) == ([], 1)
    assert _checkpoints(settings, topics)[denied.source_id]["last_error"] is None
    assert sorted(_published_keys(settings, topics)) == sorted([_key("1000", "a"), other])


def test_a_role_to_assume_is_used_for_its_source(s3, topics, settings):
    client, bucket = s3
    source = new_source(ACCOUNT, "us-east-1", f"s3://{bucket}", role_arn="arn:aws:iam::111122223333:role/reader")
    clients = AwsClients(settings)
    credentials = clients.s3(source)._request_signer._credentials.get_frozen_credentials()
    assert credentials.access_key.startswith("ASIA"), "temporary credentials from sts:AssumeRole (moto's STS)"
    assert clients.s3(None)._request_signer._credentials.get_frozen_credentials().access_key == "trailhouse-demo"


def test_throttling_is_retried_with_backoff(s3, topics, settings):
    from tests.producers.faults import Faults

    client, bucket = s3
    client.put_object(Bucket=bucket, Key=_key("1000", "a"), Body=_body("a"))
    source = new_source(ACCOUNT, "us-east-1", f"s3://{bucket}")
    Registry(settings, topics).add(source)
    clients = AwsClients(settings)
    faults = Faults(clients.s3(source)).fail("GetObject", "SlowDown", status=503, times=2)
    faults.fail("ListObjectsV2", "SlowDown", status=503, times=1)

    report = Poller(settings, topics, clients).poll_once()

    assert (report.files, report.failed) == (1, [])
    assert faults.calls["GetObject"] == 3 and faults.calls["ListObjectsV2"] >= 3


def test_a_backfill_lists_from_since_and_stops_at_until(s3, topics, settings):
    from datetime import UTC, datetime

    from producers.checkpoints import Bounds

    client, bucket = s3
    days = ("2026/10/30", "2026/11/01", "2026/11/02", "2026/11/03")
    lane = f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/"
    keys = [f"{lane}{d}/{ACCOUNT}_CloudTrail_us-east-1_{d.replace('/', '')}T1200Z_x.json.gz" for d in days]
    for i, key in enumerate(keys):
        client.put_object(Bucket=bucket, Key=key, Body=_body(f"e{i}"))
    Registry(settings, topics).add(new_source(ACCOUNT, "us-east-1", f"s3://{bucket}"))
    bounds = Bounds(since=datetime(2026, 11, 1, tzinfo=UTC), until=datetime(2026, 11, 3, tzinfo=UTC))

    assert Poller(settings, topics, AwsClients(settings), bounds=bounds).poll_once().files == 2
    assert _published_keys(settings, topics) == keys[1:3]
    assert Poller(settings, topics, AwsClients(settings)).poll_once().files == 1, "then on from the checkpoint"
    assert _published_keys(settings, topics) == keys[1:]


def test_a_poller_that_dies_mid_file_skips_nothing_when_started_again(tmp_path, topics, settings):
    """The first poller dies after some chunks of a big file reached Kafka; the next one publishes the whole
    file again (at-least-once: the worker and ClickHouse drop the repeated events) and skips no file."""
    from producers.publisher import RawPublisher

    root = tmp_path / "bucket"
    settings = settings.with_(raw_chunk_bytes=65_536)
    big = _body(*(f"big-{i:05d}" for i in range(2000)), pad="x" * 200)  # ~500 kB of records: ~9 chunks
    for key, body in ((_key("1000", "a"), _body("a")), (_key("1005", "big"), big), (_key("1010", "c"), _body("c"))):
        folder_writer(root)(key, body)
    Registry(settings, topics).add(new_source(ACCOUNT, "us-east-1", f"file://{root}"))

    class Crash(Exception):
        pass

    original = RawPublisher._produce
    raw_sent = 0

    def crash_mid_file(self, topic, key, value):
        nonlocal raw_sent
        if topic == settings.topic_raw:
            if raw_sent == 1 + 3:  # file a, then three chunks of the big file reached Kafka: the process "dies"
                self.flush()
                raise Crash
            raw_sent += 1
        return original(self, topic, key, value)

    RawPublisher._produce = crash_mid_file
    try:
        with pytest.raises(Crash):
            Poller(settings, topics, AwsClients(settings)).poll_once()
    finally:
        RawPublisher._produce = original

    assert Poller(settings, topics, AwsClients(settings)).poll_once().files >= 2
    batches = _raw_batches(settings, topics)
    big_chunks = [b["chunk_index"] for b in batches if "big" in b["object_key"]]
    count = batches[[b["object_key"] for b in batches].index(_key("1005", "big"))]["chunk_count"]
    assert sorted(set(big_chunks)) == list(range(count)) and count > 3, "every chunk of the file"
    assert len(big_chunks) == count + 3, "the three chunks sent before the crash are sent again"
    assert {b["object_key"] for b in batches} == {_key("1000", "a"), _key("1005", "big"), _key("1010", "c")}
