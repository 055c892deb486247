"""S3 event notifications in every shape a queue receives them (pure)."""

import json

from producers.notifications import ObjectRef, parse_notification

KEY = (
    "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/24/111122223333_CloudTrail_us-east-1_20261124T1000Z_a b.json.gz"
)
S3_EVENT = {
    "Records": [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "bucket": {"name": "trail"},
                "object": {"key": KEY.replace(" ", "+"), "size": 1234, "eTag": "abc"},
            },
        }
    ]
}
EXPECTED = [ObjectRef("trail", KEY, 1234, "abc")]


def test_a_direct_s3_notification_names_the_object_with_its_key_decoded():
    assert parse_notification(json.dumps(S3_EVENT)).objects == EXPECTED


def test_an_sns_wrapped_notification_is_unwrapped():
    envelope = {"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": json.dumps(S3_EVENT)}
    assert parse_notification(json.dumps(envelope)).objects == EXPECTED


def test_an_eventbridge_notification_carries_the_key_unencoded():
    event = {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {"bucket": {"name": "trail"}, "object": {"key": KEY, "size": 1234, "etag": "abc"}},
    }
    assert parse_notification(json.dumps(event)).objects == EXPECTED
    envelope = {"Type": "Notification", "Message": json.dumps(event)}
    assert parse_notification(json.dumps(envelope)).objects == EXPECTED, "EventBridge -> SNS -> SQS"


def test_cloudtrail_s_own_delivery_notification_names_its_files():
    message = {"s3Bucket": "trail", "s3ObjectKey": [KEY, KEY + "2"]}
    envelope = {"Type": "Notification", "Message": json.dumps(message)}
    assert parse_notification(json.dumps(envelope)).objects == [ObjectRef("trail", KEY), ObjectRef("trail", KEY + "2")]


def test_test_events_and_deletions_announce_nothing():
    assert parse_notification(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})).objects == []
    deleted = json.loads(json.dumps(S3_EVENT))
    deleted["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    notification = parse_notification(json.dumps(deleted))
    assert (notification.objects, notification.problem) == ([], None)
    removed = {"detail-type": "Object Deleted", "source": "aws.s3", "detail": {}}
    assert parse_notification(json.dumps(removed)).objects == []


def test_anything_else_is_a_problem_in_words():
    assert "not JSON" in parse_notification("hello").problem
    assert "unknown shape" in parse_notification(json.dumps({"hello": 1})).problem
    assert "not aws:s3" in parse_notification(json.dumps({"Records": [{"eventSource": "aws:sqs"}]})).problem
