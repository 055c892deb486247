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


def _enrich(record: dict) -> dict:
    return enrich(json.dumps(record), CTX)


def test_every_real_record_is_enriched_with_its_own_values(real_records):
    for record in real_records:
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
        assert event["user_name"] == identity.get("userName")
        assert event["access_key_id"] == (identity.get("accessKeyId") or None)  # "" is no key
        assert event["source_ip"] == record.get("sourceIPAddress")
        assert event["error_code"] == record.get("errorCode")
        assert event["is_error"] == ("errorCode" in record)
        assert event["read_only"] == record.get("readOnly")
        assert event["tls_version"] == record.get("tlsDetails", {}).get("tlsVersion")
        assert event["vpc_endpoint_id"] == record.get("vpcEndpointId")
        assert event["derived_fields"] == []
        assert event["actor"], f"every real record has a readable principal: {identity}"
        assert event["record"] is text
    assert len(real_records) == 2900


def test_identities_without_a_type_are_the_invoking_service(real_records):
    untyped = [r for r in real_records if "type" not in r.get("userIdentity", {})]
    assert len(untyped) == 42
    for record in untyped:
        event = _enrich(record)
        assert (event["user_type"], event["event_type"]) == (None, "AwsServiceEvent")
        assert event["actor"] == record["userIdentity"]["invokedBy"]
        assert event["user_agent_family"] in {"service", None}


def test_console_sign_ins_carry_their_result_and_mfa(real_records):
    sign_ins = [r for r in real_records if r["eventType"] == "AwsConsoleSignIn"]
    assert len(sign_ins) == 3
    for record in sign_ins:
        event = _enrich(record)
        assert event["action_class"] == "auth"
        assert event["console_login"] == record["responseElements"][record["eventName"]] == "Success"
        mfa = record["additionalEventData"].get("MFAUsed")
        assert event["mfa_used"] == (None if mfa is None else mfa == "Yes")
        assert event["user_agent_family"] == ("console" if record["userAgent"].startswith("Mozilla/") else "other")
        assert event["outcome"] == "success"


def test_assumed_roles_name_the_role_session_and_issuer(real_records):
    roles = [r for r in real_records if r["userIdentity"].get("type") == "AssumedRole"]
    assert roles
    for record in roles:
        event = _enrich(record)
        identity = record["userIdentity"]
        assert event["actor"] == identity["arn"].split(":assumed-role/")[1]
        assert event["session_issuer_arn"] == identity["sessionContext"]["sessionIssuer"]["arn"]
        attributes = identity["sessionContext"].get("attributes", {})
        assert event["mfa_used"] == {"true": True, "false": False}.get(attributes.get("mfaAuthenticated"))


def test_aws_service_identities_are_the_service(real_records):
    for record in (r for r in real_records if r["userIdentity"].get("type") == "AWSService"):
        assert _enrich(record)["actor"] == record["userIdentity"]["invokedBy"]


def test_resources_come_from_the_record_and_its_request_parameters(real_records):
    with_resources = next(r for r in real_records if r.get("resources"))
    assert with_resources["resources"][0]["ARN"] in _enrich(with_resources)["resources"]
    with_bucket = next(r for r in real_records if "bucketName" in (r.get("requestParameters") or {}))
    bucket = with_bucket["requestParameters"]["bucketName"]
    assert f"arn:aws:s3:::{bucket}" in _enrich(with_bucket)["resources"]
    role = next(r for r in real_records if "roleName" in (r.get("requestParameters") or {}))
    assert f"arn:aws:iam::123837392027:role/{role['requestParameters']['roleName']}" in _enrich(role)["resources"]


def test_caller_ip_versions_and_services_are_told_apart(real_records):
    for record in real_records:
        source = record.get("sourceIPAddress", "")
        version = _enrich(record)["ip_version"]
        assert version == (4 if source[:1].isdigit() and "." in source else 6 if ":" in source else None)


# --- hand-written records for the quirks of older versions and rarer shapes -----------------------------------


def test_a_v1_01_record_without_type_account_or_region_gets_them_derived_and_marked():
    event = _enrich(
        {
            "eventVersion": "1.01",
            "userIdentity": {
                "type": "IAMUser",
                "arn": "arn:aws:iam::111122223333:user/old",
                "accountId": "111122223333",
            },
            "eventTime": "2014-03-06T21:22:54Z",
            "eventSource": "ec2.amazonaws.com",
            "eventName": "StartInstances",
            "sourceIPAddress": "2001:db8::1",
            "eventID": "e-101",
        }
    )
    assert event["recipient_account_id"] == "111122223333"
    assert event["aws_region"] == "us-east-1"
    assert event["derived_fields"] == ["aws_region", "recipient_account_id"]
    assert (event["event_type"], event["event_category"], event["management_event"]) == (None, None, None)
    assert event["ip_version"] == 6
    assert event["actor"] == "old"
    assert event["action_class"] == "other", "not marked readOnly and not a create/delete verb"


def test_a_record_with_only_an_id_gets_defaults_from_the_file():
    event = enrich('{"eventID": "e1"}', CTX)
    assert event["event_time"] == CTX.ingest_time_ms
    assert (event["aws_region"], event["recipient_account_id"]) == ("us-east-1", "218007301253")
    assert event["derived_fields"] == ["aws_region", "recipient_account_id", "event_time"]
    assert event["event_name"] == "" and event["user_arn"] is None and event["read_only"] is None
    assert event["resources"] == [] and event["actor"] is None


def test_a_record_without_event_id_gets_a_stable_derived_one():
    first = enrich('{"eventName":"X"}', CTX)
    assert first["event_id"].startswith("derived-") and "event_id" in first["derived_fields"]
    assert enrich('{"eventName":"X"}', CTX)["event_id"] == first["event_id"]
    assert enrich('{"eventName":"Y"}', CTX)["event_id"] != first["event_id"]


def test_a_failed_console_sign_in_without_error_code_is_a_failure():
    event = _enrich(
        {
            "eventVersion": "1.08",
            "eventType": "AwsConsoleSignIn",
            "eventName": "ConsoleLogin",
            "eventID": "f",
            "userIdentity": {"type": "IAMUser", "userName": "HIDDEN_DUE_TO_SECURITY_REASONS"},
            "responseElements": {"ConsoleLogin": "Failure"},
            "errorMessage": "Failed authentication",
            "additionalEventData": {"MFAUsed": "No"},
            "userAgent": "Mozilla/5.0",
        }
    )
    assert (event["is_error"], event["outcome"], event["console_login"]) == (True, "failure", "Failure")
    assert (event["error_code"], event["mfa_used"], event["action_class"]) == (None, False, "auth")


@pytest.mark.parametrize(
    ("identity", "actor"),
    [
        ({"type": "IAMUser", "userName": "alice"}, "alice"),
        ({"type": "AssumedRole", "arn": "arn:aws:sts::1:assumed-role/Admin/bob@corp"}, "Admin/bob@corp"),
        ({"type": "Root", "arn": "arn:aws:iam::111122223333:root"}, "root"),
        ({"type": "FederatedUser", "arn": "arn:aws:sts::111122223333:federated-user/carol"}, "carol"),
        (
            {"type": "IdentityCenterUser", "onBehalfOf": {"userId": "9067-dave", "identityStoreArn": "arn:x"}},
            "9067-dave",
        ),
        ({"type": "Directory", "userName": "erin@corp.example"}, "erin@corp.example"),
        ({"type": "AWSAccount", "accountId": "444455556666", "principalId": "AIDA:frank"}, "AIDA:frank"),
        ({"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}, "ec2.amazonaws.com"),
        ({"type": "Role", "sessionContext": {"sessionIssuer": {"userName": "deployer"}}}, "deployer"),
        ({"type": "Unknown", "userName": "ghost"}, "ghost"),
        ({"accountId": "111122223333", "invokedBy": "AWS Internal"}, "AWS Internal"),
        ({}, None),
    ],
)
def test_actors_are_readable_for_every_identity_type(identity, actor):
    assert principal_name(identity) == actor


def test_insight_and_vpc_endpoint_events_need_no_identity():
    insight = _enrich(
        {
            "eventVersion": "1.08",
            "eventType": "AwsCloudTrailInsight",
            "eventID": "i",
            "eventTime": "2026-01-01T00:00:00Z",
            "awsRegion": "eu-west-1",
            "recipientAccountId": "1" * 12,
            "insightDetails": {"state": "Start"},
            "eventCategory": "Insight",
        }
    )
    assert (insight["actor"], insight["action_class"], insight["event_category"]) == (None, "other", "Insight")
    vpce = _enrich(
        {
            "eventVersion": "1.09",
            "eventType": "AwsVpceEvent",
            "eventID": "v",
            "eventName": "GetObject",
            "vpcEndpointId": "vpce-0a1b",
            "sourceIPAddress": "10.0.1.2",
            "readOnly": True,
            "userIdentity": {"type": "AWSAccount", "accountId": "444455556666"},
        }
    )
    assert (vpce["vpc_endpoint_id"], vpce["ip_version"], vpce["action_class"]) == ("vpce-0a1b", 4, "read")


def test_odd_types_do_not_break_enrichment():
    text = (
        '{"eventID": 5, "readOnly": "true", "eventTime": "2023-07-10T11:42:10", '
        '"userIdentity": "root", "errorCode": {"a": 1}, "resources": "x", "requestParameters": [1]}'
    )
    event = enrich(text, CTX)
    assert event["event_id"] == "5"
    assert event["read_only"] is True
    assert event["event_time"] == _ms("2023-07-10T11:42:10+00:00")
    assert event["user_arn"] is None and event["resources"] == []
    assert event["error_code"] == '{"a":1}' and event["is_error"] is True


@pytest.mark.parametrize(
    ("text", "kind"), [("not json", "not_json"), ("[1, 2]", "not_an_object"), ('"x"', "not_an_object")]
)
def test_text_that_is_not_a_json_object_is_refused(text, kind):
    with pytest.raises(NotARecord) as info:
        enrich(text, CTX)
    assert info.value.kind == kind
