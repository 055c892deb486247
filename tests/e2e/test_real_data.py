"""The 55 real CloudTrail files of ../shared/data through the whole pipeline, on the embedded stack."""

import json
import re

import pytest

from producers.split import record_texts
from tests.conftest import lay_out_real_files
from tests.e2e.cli import Trailhouse, record_text

pytestmark = pytest.mark.e2e


def test_real_logs_are_searchable_exactly_once_with_their_own_values(s3, s3_endpoint, tmp_path, real_files, aws_env):
    client, bucket = s3
    lay_out_real_files(real_files, lambda key, body: client.put_object(Bucket=bucket, Key=key, Body=body))
    trailhouse = Trailhouse(tmp_path / "data", {**aws_env, "TRAILHOUSE_S3_ENDPOINT_URL": s3_endpoint})

    trailhouse("sources", "add", "--account", "2180-0730-1253", "--region", "us-east-1", "--bucket", f"s3://{bucket}")
    first = trailhouse("run", "--once")
    assert "55 new file(s), 2,900 record(s) ingested and searchable" in first.stdout

    lines = trailhouse("search", "*", "--format", "json", "--limit", "10000").stdout.splitlines()
    originals = {}
    for path in real_files:
        for text in record_texts(path.read_bytes()):
            originals[json.loads(text)["eventID"]] = text
    assert len(originals) == 2900
    assert len(lines) == 2900, "every record exactly once"
    for line in lines:
        event = json.loads(line)
        text = originals.pop(event["event_id"])
        assert record_text(line) == text, "the original record, byte for byte"
        record = json.loads(text)
        identity = record.get("userIdentity", {})
        assert event["event_time"] == record["eventTime"].replace("Z", ".000Z")
        assert event["event_name"] == record["eventName"]
        assert event["event_source"] == record["eventSource"]
        assert event["user_arn"] == identity.get("arn", "")
        assert event["source_ip"] == record.get("sourceIPAddress", "")
        assert event["error_code"] == record.get("errorCode", "")
        assert event["recipient_account_id"] == record["recipientAccountId"]
        assert event["source_id"] == "cloudtrail-218007301253-us-east-1"
    assert originals == {}

    second = trailhouse("run", "--once")
    assert "0 new file(s), 0 record(s)" in second.stdout
    assert trailhouse("search", "*", "--count").stdout.strip() == "2900"
    assert trailhouse("search", "*123837392027*", "errorCode:AccessDenied", "--count").stdout.strip() == str(
        sum(
            1
            for path in real_files
            for r in json.loads(path.read_text())["Records"]
            if r.get("errorCode") == "AccessDenied"
        )
    )
    status = trailhouse("sources", "status").stdout.splitlines()
    assert status[1].split()[:7] == [
        "cloudtrail-218007301253-us-east-1",
        "218007301253",
        "us-east-1",
        "ONLINE",
        "2,900",
        "2023-07-10",
        "12:37:50Z",
    ], "the newest eventTime of the files"
    events_last_hour, lag = status[1].split()[7:9]
    assert events_last_hour == "2,900", "ingested within the hour"
    assert re.fullmatch(r"[\d,]+d\d\dh", lag), f"the 2023 files' lag in days, not {lag}"
