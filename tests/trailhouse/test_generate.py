"""The generated trail: deterministic, laid out and shaped like what AWS writes, varied enough to test against."""

from __future__ import annotations

import dataclasses
import gzip
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from producers.layout import parse_key
from trailhouse.errors import ConfigError
from trailhouse.generate import GenerateSpec, LogFile, account_ids, folder_writer, generate_files, write_files

START = datetime(2026, 11, 24, 9, 0, 0, 500_000, tzinfo=UTC)  # half a second in: eventTime must not round below
SPEC = GenerateSpec(events=20_000, accounts=2, seed=3, regions=("us-east-1", "eu-west-1"), start=START)
KEY = re.compile(
    r"^(?:(?P<prefix>.+)/)?AWSLogs/(?P<account>\d{12})/CloudTrail/(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)/"
    r"(?P<day>\d{4}/\d{2}/\d{2})/(?P=account)_CloudTrail_(?P=region)_(?P<stamp>\d{8}T\d{4}Z)_[A-Za-z0-9]{16}\.json\.gz$"
)
# Every top-level field AWS writes, in the order it writes them.
AWS_ORDER = [
    "eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress",
    "userAgent", "errorCode", "errorMessage", "requestParameters", "responseElements", "additionalEventData",
    "requestID", "eventID", "readOnly", "resources", "eventType", "apiVersion", "managementEvent",
    "recipientAccountId", "sharedEventID", "vpcEndpointId", "vpcEndpointAccountId", "serviceEventDetails",
    "eventCategory", "tlsDetails", "sessionCredentialFromConsole",
]  # fmt: skip


def records_of(f: LogFile) -> list[dict]:
    return orjson.loads(gzip.decompress(f.body))["Records"]


def event_time(record: dict) -> datetime:
    return datetime.strptime(record["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def files() -> list[LogFile]:
    return list(generate_files(SPEC))


@pytest.fixture(scope="module")
def records(files: list[LogFile]) -> list[dict]:
    return [r for f in files for r in records_of(f)]


def test_the_same_spec_gives_byte_identical_files(files):
    again = list(generate_files(SPEC))
    assert [(f.key, f.body, f.records) for f in again] == [(f.key, f.body, f.records) for f in files]


def test_another_seed_gives_other_files(files):
    other = list(generate_files(dataclasses.replace(SPEC, seed=4)))
    assert {f.key for f in other}.isdisjoint(f.key for f in files)
    assert [f.body for f in other[:10]] != [f.body for f in files[:10]]


@pytest.mark.parametrize("events", [0, 1, 7, 4_999])
def test_exactly_the_requested_number_of_records_is_generated(events):
    files = list(generate_files(GenerateSpec(events=events, start=START, span=timedelta(hours=2))))
    assert sum(f.records for f in files) == events
    assert all(f.records == len(records_of(f)) > 0 for f in files)


def test_keys_follow_the_cloudtrail_layout_with_the_prefix():
    spec = GenerateSpec(events=3_000, accounts=2, regions=("us-east-1", "ap-southeast-2"), start=START, prefix="org/t")
    keys = [f.key for f in generate_files(spec)]
    assert len(set(keys)) == len(keys)
    for key in keys:
        m = KEY.match(key)
        assert m, key
        assert m["prefix"] == "org/t"
        assert m["day"].replace("/", "") == m["stamp"][:8], "day folder is the delivery day"
        assert int(m["stamp"][-3:-1]) % 5 == 0, "deliveries land on 5-minute boundaries"
        parsed = parse_key(key)
        assert parsed is not None and (parsed.prefix, parsed.account, parsed.region) == (
            "org/t",
            m["account"],
            m["region"],
        )


def test_a_file_is_delivered_a_few_minutes_after_its_last_record(files):
    for f in files:
        delivered = datetime.strptime(KEY.match(f.key)["stamp"], "%Y%m%dT%H%MZ").replace(tzinfo=UTC)
        last = max(event_time(r) for r in records_of(f))
        assert timedelta(0) < delivered - last <= timedelta(minutes=10)


def test_bodies_are_compact_records_json_gzipped_without_a_timestamp(files):
    for f in files[:50]:
        assert f.body[4:8] == b"\0\0\0\0", "gzip mtime is 0, so bytes do not depend on when they were made"
        raw = gzip.decompress(f.body)
        assert raw.startswith(b'{"Records":[{"eventVersion":"')
        assert orjson.dumps(orjson.loads(raw)) == raw, "no whitespace, as AWS writes it"


def test_event_times_lie_in_the_span_and_files_cover_one_window(files):
    for f in files:
        times = [event_time(r) for r in records_of(f)]
        assert all(START <= t < START + SPEC.span for t in times)
        assert max(times) - min(times) < timedelta(minutes=5)


def test_records_belong_to_the_account_and_region_of_their_key(files):
    for f in files:
        m = KEY.match(f.key)
        for r in records_of(f):
            assert r["recipientAccountId"] == m["account"]
            assert r["awsRegion"] == m["region"]


def test_the_first_account_is_the_documented_one_and_the_rest_follow_the_seed():
    ids = account_ids(5, seed=1)
    assert ids[0] == "123456789012"
    assert len(set(ids)) == 5 and all(re.fullmatch(r"\d{12}", a) for a in ids)
    assert account_ids(3, seed=1) == ids[:3]
    assert account_ids(5, seed=2)[1:] != ids[1:]
    assert {KEY.match(f.key)["account"] for f in generate_files(GenerateSpec(events=500, start=START))} == set(
        account_ids(3, seed=0)
    )


def test_every_identity_shape_and_event_type_appears(records):
    types = Counter(r["userIdentity"].get("type") for r in records)
    assert {"IAMUser", "AssumedRole", "Root", "AWSService", "AWSAccount", None} <= set(types)
    assert types["IAMUser"] + types["AssumedRole"] > 0.85 * len(records)
    assert {r["eventType"] for r in records} == {"AwsApiCall", "AwsServiceEvent", "AwsConsoleSignIn"}
    service_events = [r for r in records if r["eventType"] == "AwsServiceEvent"]
    assert all(set(r["userIdentity"]) == {"accountId", "invokedBy"} for r in service_events)
    sessions = [r["userIdentity"] for r in records if r["userIdentity"].get("type") == "AssumedRole"]
    assert all(s["sessionContext"]["sessionIssuer"]["type"] == "Role" for s in sessions)
    assert all(s["accessKeyId"].startswith("ASIA") and len(s["accessKeyId"]) == 20 for s in sessions)
    users = [r["userIdentity"] for r in records if r["userIdentity"].get("type") == "IAMUser"]
    assert {u["accessKeyId"][:4] for u in users if u.get("accessKeyId")} == {"AKIA", "ASIA"}


def test_console_sign_ins_succeed_and_fail_like_aws_logs_them(records):
    logins = [r for r in records if r["eventType"] == "AwsConsoleSignIn"]
    assert all(r["eventName"] == "ConsoleLogin" and r["eventSource"] == "signin.amazonaws.com" for r in logins)
    outcomes = Counter(r["responseElements"]["ConsoleLogin"] for r in logins)
    assert outcomes["Success"] > outcomes["Failure"] > 0
    for r in logins:
        failed = r["responseElements"]["ConsoleLogin"] == "Failure"
        assert (r.get("errorMessage") == "Failed authentication") == failed
    assert {r["additionalEventData"]["MFAUsed"] for r in logins} == {"Yes", "No"}


def test_about_five_percent_of_calls_fail_with_aws_error_codes(records):
    failed = [r for r in records if "errorCode" in r or "errorMessage" in r]
    assert 0.03 < len(failed) / len(records) < 0.07
    codes = {r.get("errorCode") for r in failed}
    assert {"AccessDenied", "Client.UnauthorizedOperation", "ThrottlingException", "NoSuchEntityException"} <= codes
    assert all(r["responseElements"] is None for r in failed if r["eventType"] == "AwsApiCall")
    denied = next(r for r in failed if r.get("errorCode") == "AccessDenied" and r["eventSource"] == "iam.amazonaws.com")
    assert denied["errorMessage"].startswith(
        f"User: {denied['userIdentity']['arn']} is not authorized to perform: iam:"
    )


def test_calls_span_many_services_mostly_reads(records):
    calls = [r for r in records if r["eventType"] == "AwsApiCall"]
    assert len({r["eventSource"] for r in records}) >= 25
    assert 0.7 < sum(r["readOnly"] for r in calls) / len(calls) < 0.97
    names = Counter((r["eventSource"], r["eventName"]) for r in records)
    for source, name in [("sts", "AssumeRole"), ("iam", "CreateUser"), ("ec2", "RunInstances"), ("kms", "Decrypt")]:
        assert names[(f"{source}.amazonaws.com", name)] > 0, name
    assert names[("cloudtrail.amazonaws.com", "StopLogging")] < names[("cloudtrail.amazonaws.com", "DescribeTrails")]


def test_sources_are_public_ips_ipv6_private_and_service_names(records):
    ips = {r["sourceIPAddress"] for r in records}
    assert any(re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ip) and not ip.startswith("10.") for ip in ips)
    assert any(":" in ip for ip in ips)
    assert {"AWS Internal", "ec2.amazonaws.com", "s3.amazonaws.com"} & ips
    via_service = [r for r in records if r["sourceIPAddress"].endswith(".amazonaws.com")]
    assert all("tlsDetails" not in r for r in via_service), "services calling on one's behalf send no TLS details"


def test_each_account_has_a_small_stable_cast(records):
    for account in account_ids(SPEC.accounts, SPEC.seed):
        own = [r for r in records if r["recipientAccountId"] == account and r["userIdentity"].get("type") == "IAMUser"]
        users = Counter(r["userIdentity"]["userName"] for r in own)
        assert 4 <= len(users) <= 8
        busiest, count = users.most_common(1)[0]
        assert count > 2 * len(own) / len(users), "a few principals dominate, as in a real account"
        own_ips = {r["sourceIPAddress"] for r in own if r["userIdentity"]["userName"] == busiest}
        assert len({ip for ip in own_ips if ip[-1].isdigit() or ":" in ip}) <= 3, "besides services acting for them"


def test_old_event_versions_lack_the_fields_added_after_them(records):
    versions = Counter(r["eventVersion"] for r in records)
    assert {"1.08", "1.09", "1.05", "1.02"} <= set(versions)
    assert 0.005 < (versions["1.02"] + versions["1.05"]) / len(records) < 0.04
    for r in records:
        old = r["eventVersion"] in ("1.02", "1.05")
        assert ("eventCategory" in r) is not old and ("managementEvent" in r) is not old
        assert not (old and ("tlsDetails" in r or "sessionCredentialFromConsole" in r))
        assert r["recipientAccountId"]


def test_fields_come_in_the_order_aws_writes_them(records, real_records):
    for keys in {tuple(r) for r in records}:
        assert list(keys) == sorted(keys, key=AWS_ORDER.index)
    for part in (lambda r: r, lambda r: r["userIdentity"]):
        real = {(a, b) for r in real_records for i, a in enumerate(list(part(r))) for b in list(part(r))[i + 1 :]}
        for keys in {tuple(part(r)) for r in records}:
            swapped = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1 :] if (b, a) in real]
            assert not swapped, f"real CloudTrail files write these the other way round: {swapped}"


def test_values_exercise_unicode_and_json_escaping(files):
    raw = b"".join(gzip.decompress(f.body) for f in files)
    assert "Ångström".encode() in raw and "東京".encode() in raw
    assert b'\\"' in raw and b"\\\\" in raw


def test_global_services_appear_in_us_east_1_only_or_the_first_region_without_it():
    def global_regions(regions: tuple[str, ...]) -> set[str]:
        spec = GenerateSpec(events=4_000, accounts=1, regions=regions, start=START)
        return {
            r["awsRegion"]
            for f in generate_files(spec)
            for r in records_of(f)
            if r["eventSource"] in ("iam.amazonaws.com", "signin.amazonaws.com")
        }

    assert global_regions(("eu-west-1", "us-east-1")) == {"us-east-1"}
    assert global_regions(("eu-central-1", "eu-west-1")) == {"eu-central-1"}


def test_without_a_start_the_span_ends_at_the_current_minute():
    before = datetime.now(UTC).replace(second=0, microsecond=0)
    times = [
        event_time(r) for f in generate_files(GenerateSpec(events=300, span=timedelta(hours=1))) for r in records_of(f)
    ]
    after = datetime.now(UTC).replace(second=0, microsecond=0)
    assert before - timedelta(hours=1) <= min(times) and max(times) < after


@pytest.mark.parametrize(
    "change, message",
    [
        ({"events": -1}, "events"),
        ({"accounts": 0}, "accounts"),
        ({"regions": ()}, "regions"),
        ({"regions": ("us-east-1", "us-east-1")}, "regions"),
        ({"span": timedelta(0)}, "span"),
        ({"prefix": "logs/"}, "prefix"),
    ],
)
def test_impossible_specs_are_refused_with_the_reason(change, message):
    with pytest.raises(ConfigError, match=message):
        GenerateSpec(**{"events": 10, **change})


def test_a_span_without_a_whole_second_is_refused():
    spec = GenerateSpec(events=1, start=START, span=timedelta(milliseconds=400))
    with pytest.raises(ConfigError, match="no whole second"):
        list(generate_files(spec))


def test_write_files_puts_every_file_in_order_and_reports_progress(files):
    put, progress = [], []
    done = write_files(files[:20], lambda key, body: put.append((key, body)), lambda f, r: progress.append((f, r)))
    assert put == [(f.key, f.body) for f in files[:20]]
    assert done == progress[-1] == (20, sum(f.records for f in files[:20]))
    assert [f for f, _ in progress] == list(range(1, 21))


def test_folder_writer_lays_files_out_like_aws_s3_sync(tmp_path, files):
    written = write_files(files[:30], folder_writer(tmp_path))
    on_disk = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert on_disk == {f.key: f.body for f in files[:30]}, "no temporary files left behind"
    assert written == (30, sum(f.records for f in files[:30]))
    with pytest.raises(ValueError, match="outside"):
        folder_writer(tmp_path)("AWSLogs/../../escape.json.gz", b"")
