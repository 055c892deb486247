"""SQS mode against moto's S3, SQS, SNS and EventBridge (one server): notifications sent by the services
themselves when an object is written, in each of the three shapes."""

from __future__ import annotations

import gzip
import json
import threading
import time

import boto3
import pytest

from producers.credentials import AwsClients
from producers.files import FilePublisher
from producers.sqs import SqsPoller
from schemas import Codec
from tests.producers.faults import Faults
from trailhouse.kafka import read_to_end
from trailhouse.registry import Registry
from trailhouse.sources import new_source

ACCOUNT = "111122223333"


def _key(hhmm: str, suffix: str = "a", account: str = ACCOUNT, kind: str = "CloudTrail") -> str:
    return f"AWSLogs/{account}/{kind}/us-east-1/2026/11/24/{account}_{kind}_us-east-1_20261124T{hhmm}Z_{suffix}.json.gz"


def _body(*event_ids: str) -> bytes:
    return gzip.compress(json.dumps({"Records": [{"eventID": e} for e in event_ids]}).encode())


def _raw_keys(settings, topics) -> list[str]:
    codec = Codec.of("RawBatch")
    return [codec.decode(v)["object_key"] for _, v in read_to_end(settings, topics, settings.topic_raw)]


class Aws:
    def __init__(self, endpoint: str) -> None:
        make = lambda service: boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")  # noqa: E731
        self.sqs, self.sns, self.events = make("sqs"), make("sns"), make("events")

    def queue(self, name: str) -> tuple[str, str]:
        url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    def left(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def aws(s3_endpoint):
    return Aws(s3_endpoint)


def _notify(mode: str, aws: Aws, client, bucket: str, queue_arn: str, unique: str) -> None:
    """Make the bucket announce new objects to the queue: directly, through SNS, or through EventBridge."""
    events = ["s3:ObjectCreated:*"]
    if mode == "direct":
        config = {"QueueConfigurations": [{"QueueArn": queue_arn, "Events": events}]}
    elif mode == "sns":
        topic = aws.sns.create_topic(Name=f"t-{unique}")["TopicArn"]
        aws.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        config = {"TopicConfigurations": [{"TopicArn": topic, "Events": events}]}
    else:
        rule = f"r-{unique}"
        pattern = {"source": ["aws.s3"], "detail": {"bucket": {"name": [bucket]}}}
        aws.events.put_rule(Name=rule, EventPattern=json.dumps(pattern))
        aws.events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn}])
        config = {"EventBridgeConfiguration": {}}
    client.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)


@pytest.mark.parametrize("mode", ["direct", "sns", "eventbridge"])
def test_notified_files_are_published_once_and_their_messages_deleted(mode, aws, s3, topics, settings, unique):
    client, bucket = s3
    url, arn = aws.queue(f"q-{unique}")
    _notify(mode, aws, client, bucket, arn, unique)
    Registry(settings, topics).add(new_source(ACCOUNT, "us-east-1", f"s3://{bucket}"))
    written = [_key("1000", "a b"), _key("1005", "c")]  # a space in a key: URL-encoded in S3's notification
    for key in written:
        client.put_object(Bucket=bucket, Key=key, Body=_body(key[-12:]))
    digest = (
        f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/2026/11/24/{ACCOUNT}_CloudTrail-Digest_us-east-1_t_x.json.gz"
    )
    client.put_object(Bucket=bucket, Key=digest, Body=gzip.compress(b"{}"))
    client.put_object(Bucket=bucket, Key=_key("1000", account="999988887777"), Body=_body("not registered"))

    report = SqsPoller(settings, topics, AwsClients(settings), url).drain()

    assert sorted(_raw_keys(settings, topics)) == sorted(written)
    assert (report.files, report.records, report.digests, report.errors) == (2, 2, 1, {})
    assert report.deleted == report.messages >= 4 and aws.left(url) == 0
    checkpoint = Codec.of("Checkpoint").decode(read_to_end(settings, topics, settings.topic_checkpoints)[-1][1])
    assert (checkpoint["files"], checkpoint["last_key"], checkpoint["last_error"]) == (2, _key("1005", "c"), None)


def test_a_message_waits_in_the_queue_while_its_source_is_denied_and_goes_once_access_is_granted(
    aws, s3, topics, settings, unique
):
    client, bucket = s3
    settings = settings.with_(sqs_visibility_timeout=2.0)
    url, arn = aws.queue(f"q-{unique}")
    _notify("direct", aws, client, bucket, arn, unique)
    source = new_source(ACCOUNT, "us-east-1", f"s3://{bucket}")
    Registry(settings, topics).add(source)
    client.put_object(Bucket=bucket, Key=_key("1000"), Body=_body("e1"))
    clients = AwsClients(settings)
    faults = Faults(clients.s3(source)).fail("GetObject", "AccessDenied")
    poller = SqsPoller(settings, topics, clients, url)

    report = poller.drain()
    assert "access denied" in report.errors[source.source_id] and report.files == 0
    assert aws.left(url) >= 1, "not deleted: it comes back after the visibility timeout"

    faults.clear()
    deadline = time.monotonic() + 60
    while aws.left(url):
        assert time.monotonic() < deadline, "the message did not come back"
        poller.receive_once(1)
    assert _raw_keys(settings, topics) == [_key("1000")]


def test_visibility_is_extended_while_a_slow_file_is_in_flight(aws, s3, topics, settings, unique, monkeypatch):
    client, bucket = s3
    settings = settings.with_(sqs_visibility_timeout=2.0)
    url, arn = aws.queue(f"q-{unique}")
    Registry(settings, topics).add(new_source(ACCOUNT, "us-east-1", f"s3://{bucket}"))
    client.put_object(Bucket=bucket, Key=_key("1000"), Body=_body("e1"))
    body = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                         "s3": {"bucket": {"name": bucket}, "object": {"key": _key("1000"), "size": 10}}}]}  # fmt: skip
    aws.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    in_flight, release = threading.Event(), threading.Event()
    publish = FilePublisher.publish

    def slow(self, *args, **kwargs):
        in_flight.set()
        release.wait(30)
        return publish(self, *args, **kwargs)

    monkeypatch.setattr(FilePublisher, "publish", slow)
    poller = SqsPoller(settings, topics, AwsClients(settings), url)
    worker = threading.Thread(target=poller.receive_once, args=(0,))
    worker.start()
    try:
        assert in_flight.wait(30)
        seen_by_others = []
        started = time.monotonic()
        while time.monotonic() - started < 3 * settings.sqs_visibility_timeout:  # three timeouts go by
            seen_by_others += aws.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, VisibilityTimeout=0).get(
                "Messages", []
            )
        assert seen_by_others == [], "a second poller would have received the message of the file in flight"
    finally:
        release.set()
        worker.join(60)
    assert _raw_keys(settings, topics) == [_key("1000")] and aws.left(url) == 0


def test_a_message_that_is_not_a_notification_is_dead_lettered_and_deleted(aws, topics, settings, unique):
    url, _ = aws.queue(f"q-{unique}")
    aws.sqs.send_message(QueueUrl=url, MessageBody="hello")
    report = SqsPoller(settings, topics, AwsClients(settings), url).drain()
    assert (report.messages, report.deleted, aws.left(url)) == (1, 1, 0)
    [(_, value)] = read_to_end(settings, topics, settings.topic_dlq)
    dead = Codec.of("DeadLetter").decode(value)
    assert dead["error_type"] == "not_a_notification" and dead["payload"] == b"hello" and url in dead["location"]


def test_a_source_registered_while_the_poller_runs_is_collected_from_its_first_notification(
    aws, s3, topics, settings, unique, monkeypatch
):
    monkeypatch.setattr("producers.sqs.REFRESH_UNKNOWN_S", 0.0)
    client, bucket = s3
    url, arn = aws.queue(f"q-{unique}")
    _notify("direct", aws, client, bucket, arn, unique)
    poller = SqsPoller(settings, topics, AwsClients(settings), url)
    client.put_object(Bucket=bucket, Key=_key("1000"), Body=_body("before"))
    first = poller.drain()  # with S3's test event
    assert (first.files, first.skipped) == (0, first.messages), "not registered yet: skipped"

    Registry(settings, topics).add(new_source(ACCOUNT, "us-east-1", f"s3://{bucket}"))
    client.put_object(Bucket=bucket, Key=_key("1005"), Body=_body("after"))
    report = poller.drain()  # within REFRESH_EVERY_S of the last read: the unknown source makes it read again
    assert (report.files, report.skipped) == (1, 0) and _raw_keys(settings, topics) == [_key("1005")]
