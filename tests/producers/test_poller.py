"""The poller against a real S3 endpoint (moto server) and a real broker (Tansu)."""

import gzip
import json

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
