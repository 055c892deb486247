"""Insights go from `cloudtrail.insights` into the `insights` table and out through `trailhouse insights`."""

import dataclasses
import io
import json
from datetime import UTC, datetime

from confluent_kafka import Producer

from schemas import Codec
from streams.insights import CALL_RATE, Observation, Sensitivity, add_events, new_state, to_avro
from tests.conftest import wait_drained
from tests.sinks.test_sink import RunningSink
from trailhouse import commands
from trailhouse.kafka import producer_options

SOURCE = "cloudtrail-218007301253-us-east-1"
KEY = f"{CALL_RATE}|us-east-1|iam.amazonaws.com|CreateAccessKey|"
T0 = 29_000_000  # an epoch minute: 2025-02-19T21:20Z

# An Insights record as AWS delivers it in a trail's CloudTrail-Insight/ files (shape of AWS's documented example).
AWS_INSIGHT = {
    "eventVersion": "1.08",
    "eventTime": "2025-02-21T16:00:00Z",
    "awsRegion": "us-east-1",
    "eventID": "8c4d2a5e-0f3b-4a8e-9a53-4b8c2f0d7e11",
    "eventType": "AwsCloudTrailInsight",
    "recipientAccountId": "218007301253",
    "sharedEventID": "b4c8a1f2-7d3e-4f56-8a9b-0c1d2e3f4a5b",
    "insightDetails": {
        "state": "Start",
        "eventSource": "ec2.amazonaws.com",
        "eventName": "RunInstances",
        "insightType": "ApiErrorRateInsight",
        "errorCode": "Client.RequestLimitExceeded",
        "insightContext": {
            "statistics": {
                "baseline": {"average": 0.0417},
                "insight": {"average": 12.0},
                "insightDuration": 1,
                "baselineDuration": 10079,
            },
            "attributions": [],
        },
    },
    "eventCategory": "Insight",
}


def _detected() -> list[dict]:
    """A Start and an End from the detector: two days at 2 calls a minute, then 5 minutes at 30."""
    counts = {T0 + m: 2 for m in range(2 * 1440)}
    counts.update({T0 + 2 * 1440 + m: 30 for m in range(5)})
    counts[T0 + 2 * 1440 + 60] = 1  # moves the watermark past the burst's end
    arn, agent = "arn:aws:iam::218007301253:user/ci", "aws-cli/2"
    observations = [Observation(m, (KEY,), (arn, agent, "")) for m, n in sorted(counts.items()) for _ in range(n)]
    return add_events(new_state(), observations, SOURCE, Sensitivity()).records


def test_insights_land_once_and_are_listed_newest_first(settings, topics, clickhouse, chdb_dsn):
    detected = _detected()
    assert [r["insightDetails"]["state"] for r in detected] == ["Start", "End"]
    codec = Codec.of("Insight")
    values = [codec.encode(to_avro(r, SOURCE)) for r in detected] * 2  # a replayed chunk re-emits its insights
    values.append(codec.encode(to_avro(AWS_INSIGHT, SOURCE, aws_made=True)))
    producer = Producer(producer_options(settings, topics))
    for value in values:
        producer.produce(settings.topic_insights, key=SOURCE.encode(), value=value)
    assert producer.flush(30) == 0

    with RunningSink(settings, topics, clickhouse):
        wait_drained(settings, topics, settings.sink_group, settings.topic_insights)

    settings = dataclasses.replace(settings, clickhouse_url=chdb_dsn)  # the session's chDB: one path per process
    out = io.StringIO()
    since = datetime(2025, 1, 1, tzinfo=UTC)
    assert commands.insights(settings, since=since, source_id=None, limit=10, output="json", out=out) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(x["state"], x["aws_made"]) for x in lines] == [("End", False), ("Start", False), ("Start", True)]
    end, start, aws = lines
    assert end["shared_event_id"] == start["shared_event_id"] and end["event_id"] != start["event_id"]
    assert start["event_time"] == "2025-02-21T21:20:00.000Z" and start["insight_average"] == 30.0
    assert end["insight_duration"] == 5 and end["record"]["insightDetails"]["state"] == "End"
    attributions = {a["attribute"]: a for a in start["record"]["insightDetails"]["insightContext"]["attributions"]}
    assert attributions["userIdentityArn"]["insight"] == [
        {"value": "arn:aws:iam::218007301253:user/ci", "average": 30.0}
    ]
    assert aws["record"] == AWS_INSIGHT, "AWS's record is kept as delivered"
    assert aws["error_code"] == "Client.RequestLimitExceeded" and aws["baseline_duration"] == 10079

    table = io.StringIO()
    commands.insights(settings, since=None, source_id=SOURCE, limit=10, output="table", out=table)
    text = table.getvalue()
    assert "iam:CreateAccessKey" in text and "30/min vs 2/min" in text and "5 min" in text
    assert "ec2:RunInstances (Client.RequestLimitExceeded)" in text and "AWS" in text
