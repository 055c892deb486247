import json
from datetime import datetime

import pytest

from streams.enrich import FileContext, NotARecord, enrich, principal_name

CTX = FileContext(
    source_id="cloudtrail-218007301253-us-east-1",
    object_key="AWSLogs/218007301253/CloudTrail/us-east-1/2023/07/10/f.json.gz",
    account="218007301253",
    region="us-east-1",
    ingest_time_ms=1_800_000_000_000,
)


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_every_real_record_is_enriched_with_its_own_values(real_files):
    seen = 0
    for path in real_files:
        for record in json.loads(path.read_text())["Records"]:
            text = json.dumps(record)
            event = enrich(text, CTX)
            identity = record.get("userIdentity", {})
            assert event["event_id"] == record["eventID"]
            assert event["event_time"] == _ms(record["eventTime"])
            assert event["event_name"] == record["eventName"]
            assert event["event_source"] == record["eventSource"]
            assert event["aws_region"] == record["awsRegion"]
            assert event["recipient_account_id"] == record["recipientAccountId"] == "123837392027"
            assert event["user_arn"] == identity.get("arn")
            assert event["user_type"] == identity.get("type")
            assert event["source_ip"] == record.get("sourceIPAddress")
            assert event["error_code"] == record.get("errorCode")
            assert event["read_only"] == record.get("readOnly")
            assert event["record"] is text
            seen += 1
    assert seen == 2900


def test_service_identities_without_a_type_still_get_a_principal(real_records):
    untyped = [r for r in real_records if "type" not in r.get("userIdentity", {})]
    assert untyped, "the real data has service events whose identity has no type"
    for record in untyped:
        event = enrich(json.dumps(record), CTX)
        assert event["user_type"] is None
        assert event["user_name"] == record["userIdentity"].get("invokedBy") or event["user_name"]


def test_a_record_with_only_an_id_gets_defaults_from_the_file():
    event = enrich('{"eventID": "e1"}', CTX)
    assert event["event_id"] == "e1"
    assert event["event_time"] == CTX.ingest_time_ms
    assert event["aws_region"] == "us-east-1"
    assert event["recipient_account_id"] == "218007301253"
    assert event["event_name"] == "" and event["user_arn"] is None and event["read_only"] is None


def test_the_account_falls_back_to_the_identity_before_the_key():
    text = '{"eventID":"e","userIdentity":{"type":"IAMUser","accountId":"111122223333"}}'
    assert enrich(text, CTX)["recipient_account_id"] == "111122223333"


def test_a_record_without_event_id_gets_a_stable_derived_one():
    first = enrich('{"eventName":"X"}', CTX)["event_id"]
    assert first.startswith("derived-")
    assert enrich('{"eventName":"X"}', CTX)["event_id"] == first
    assert enrich('{"eventName":"Y"}', CTX)["event_id"] != first


def test_odd_types_do_not_break_enrichment():
    text = (
        '{"eventID": 5, "readOnly": "true", "eventTime": "2023-07-10T11:42:10", '
        '"userIdentity": "root", "errorCode": {"a": 1}}'
    )
    event = enrich(text, CTX)
    assert event["event_id"] == "5"
    assert event["read_only"] is True
    assert event["event_time"] == _ms("2023-07-10T11:42:10+00:00")
    assert event["user_arn"] is None
    assert event["error_code"] == '{"a":1}'


@pytest.mark.parametrize(
    ("identity", "name"),
    [
        ({"type": "IAMUser", "userName": "alice"}, "alice"),
        ({"type": "AssumedRole", "arn": "arn:aws:sts::1:assumed-role/Admin/bob@corp"}, "Admin/bob@corp"),
        ({"type": "Root", "arn": "arn:aws:iam::111122223333:root"}, "root"),
        ({"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}, "ec2.amazonaws.com"),
        ({"type": "Role", "sessionContext": {"sessionIssuer": {"userName": "deployer"}}}, "deployer"),
        ({}, None),
    ],
)
def test_principal_names_are_readable(identity, name):
    assert principal_name(identity) == name


@pytest.mark.parametrize(
    ("text", "kind"), [("not json", "not_json"), ("[1, 2]", "not_an_object"), ('"x"', "not_an_object")]
)
def test_text_that_is_not_a_json_object_is_refused(text, kind):
    with pytest.raises(NotARecord) as info:
        enrich(text, CTX)
    assert info.value.kind == kind
