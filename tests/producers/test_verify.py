"""`sources verify` words for each failure moto can produce, with the source's own credentials.

Access denial: moto's server enforces IAM identity policies once told to (POST /moto-api/reset-auth), not bucket
policies; the denial tests run on a server of their own that enforces IAM (users without s3:ListBucket or
s3:GetObject). KMS denial cannot be produced by moto: the object is really SSE-KMS encrypted (moto's KMS), and
the GetObject denial is injected at the boto3 client (tests/producers/faults.py).
"""

from __future__ import annotations

import gzip
import json
import urllib.request
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from producers.credentials import AwsClients
from producers.storage import open_store
from producers.verify import verify_source
from tests.producers.faults import Faults
from trailhouse.config import Settings
from trailhouse.embedded_s3 import local_s3
from trailhouse.sources import new_source

ACCOUNT = "111122223333"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _put(client, bucket: str, key_head: str, when: datetime, region: str = "us-east-1", account: str = ACCOUNT):
    key = (
        f"{key_head}AWSLogs/{account}/CloudTrail/{region}/{when:%Y/%m/%d}/"
        f"{account}_CloudTrail_{region}_{when:%Y%m%dT%H%M}Z_x.json.gz"
    )
    client.put_object(Bucket=bucket, Key=key, Body=gzip.compress(json.dumps({"Records": [{"eventID": "1"}]}).encode()))
    return key


def _verify(settings: Settings, source, clients: AwsClients | None = None):
    clients = clients or AwsClients(settings)
    store = open_store(source.bucket, lambda: clients.s3(source))
    return verify_source(source, store, now=NOW, recent=timedelta(hours=24))


def _failure(verification) -> tuple[str, str]:
    [failed] = [f for f in verification.findings if not f.ok]
    return failed.what, failed.fix


def test_a_readable_source_with_recent_files_passes(s3, settings):
    client, bucket = s3
    key = _put(client, bucket, "", NOW - timedelta(minutes=20))
    verification = _verify(settings, new_source(ACCOUNT, "us-east-1", f"s3://{bucket}"))
    assert verification.ok, verification.render()
    text = verification.render()
    assert "newest log file delivered 2026-11-24 11:40Z, 20 min ago" in text and f"read {key}: 1 record(s)" in text


def test_a_missing_bucket(settings):
    what, fix = _failure(_verify(settings, new_source(ACCOUNT, "us-east-1", "s3://no-such-trail-bucket")))
    assert what == "bucket s3://no-such-trail-bucket does not exist" and "describe-trails" in fix


def test_files_for_other_regions_only(s3, settings):
    client, bucket = s3
    _put(client, bucket, "", NOW, region="eu-west-1")
    _put(client, bucket, "", NOW, region="us-east-2")
    what, fix = _failure(_verify(settings, new_source(ACCOUNT, "us-east-1", f"s3://{bucket}")))
    assert what == "no log files for us-east-1, while files exist for region(s) eu-west-1, us-east-2"
    assert fix.startswith("did you mean us-east-2? register the source with --region us-east-2")


@pytest.mark.parametrize(
    ("layout", "source", "expected"),
    [
        ("empty", {}, "there is no AWSLogs/ folder"),
        ("other-account", {}, "AWSLogs/ holds accounts 444455556666: check the account number"),
        ("organization", {}, "organization trail: register the source with --org-id o-a1b2c3d4e5"),
        ("prefixed", {}, "did you mean --prefix trails?"),
        ("top", {"prefix": "trails"}, "register the source without --prefix"),
    ],
)
def test_no_cloudtrail_prefix_for_the_account_says_where_the_logs_are(s3, settings, layout, source, expected):
    client, bucket = s3
    if layout == "other-account":
        _put(client, bucket, "", NOW, account="444455556666")
    elif layout == "organization":
        _put(client, bucket, "", NOW, account="o-a1b2c3d4e5/" + ACCOUNT)
    elif layout == "prefixed":
        _put(client, bucket, "trails/", NOW)
    elif layout == "top":
        _put(client, bucket, "", NOW)
    else:
        client.put_object(Bucket=bucket, Key="README.txt", Body=b"hello")
    what, fix = _failure(_verify(settings, new_source(ACCOUNT, "us-east-1", f"s3://{bucket}", **source)))
    assert what.startswith(f"no CloudTrail folder for account {ACCOUNT}") and expected in fix


def test_files_present_but_none_recent(s3, settings):
    client, bucket = s3
    _put(client, bucket, "", NOW - timedelta(days=3))
    key = _put(client, bucket, "", NOW - timedelta(days=2))
    what, fix = _failure(_verify(settings, new_source(ACCOUNT, "us-east-1", f"s3://{bucket}")))
    assert (
        what == f"log files present, but none in the last 24 hours: the newest was delivered 2026-11-22 12:00Z ({key})"
    )
    assert "get-trail-status" in fix


def test_kms_decrypt_denied_for_an_sse_kms_object(s3, s3_endpoint, settings):
    client, bucket = s3
    key_id = boto3.client("kms", endpoint_url=s3_endpoint, region_name="us-east-1").create_key()["KeyMetadata"]["Arn"]
    key = f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2026/11/24/{ACCOUNT}_CloudTrail_us-east-1_20261124T1155Z_k.json.gz"
    body = gzip.compress(b'{"Records": []}')
    client.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)
    source = new_source(ACCOUNT, "us-east-1", f"s3://{bucket}")
    clients = AwsClients(settings)
    Faults(clients.s3(source)).fail("GetObject", "AccessDenied", message="not authorized to perform: kms:Decrypt")
    what, fix = _failure(_verify(settings, source, clients))
    assert what.startswith(f"KMS decrypt denied: {key} is encrypted with KMS key {key_id} (SSE-KMS)")
    assert fix.startswith("allow kms:Decrypt on that key to the collector's credentials")


@pytest.fixture(scope="module")
def iam_enforcing_s3(aws_env, tmp_path_factory):
    """A moto server of its own, set up freely, then enforcing IAM: users 'lister' (s3:ListBucket only), 'nobody'
    (no permission) and 'assumer' (may only assume the role 'reader', which may read everything)."""
    with local_s3() as endpoint:
        make = lambda service: boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")  # noqa: E731
        s3, iam = make("s3"), make("iam")
        s3.create_bucket(Bucket="guarded-trail")
        _put(s3, "guarded-trail", "", NOW - timedelta(minutes=10))
        policies = {
            "lister": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::guarded-trail"}],
            "nobody": [],
            "assumer": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
        }
        credentials = tmp_path_factory.mktemp("aws") / "credentials"
        lines = []
        for user, statements in policies.items():
            iam.create_user(UserName=user)
            if statements:
                document = json.dumps({"Version": "2012-10-17", "Statement": statements})
                iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=document)
            keys = iam.create_access_key(UserName=user)["AccessKey"]
            lines += [f"[{user}]", f"aws_access_key_id = {keys['AccessKeyId']}"]
            lines += [f"aws_secret_access_key = {keys['SecretAccessKey']}", ""]
        trust = {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:user/assumer"},
            "Action": "sts:AssumeRole",
        }
        role = iam.create_role(
            RoleName="reader", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [trust]})
        )["Role"]["Arn"]
        read_all = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_role_policy(RoleName="reader", PolicyName="read", PolicyDocument=json.dumps(read_all))
        credentials.write_text("\n".join(lines))
        request = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request, timeout=10).close()
        yield endpoint, credentials, role


def test_listing_and_reading_denied_by_iam_and_a_role_that_may(iam_enforcing_s3, monkeypatch, tmp_path):
    endpoint, credentials, role = iam_enforcing_s3
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    settings = Settings(data_dir=tmp_path, s3_endpoint_url=endpoint, s3_region="us-east-1")

    what, fix = _failure(_verify(settings, new_source(ACCOUNT, "us-east-1", "s3://guarded-trail", profile="nobody")))
    assert what == "listing s3://guarded-trail is denied to the credentials of profile nobody"
    assert fix.startswith("allow s3:ListBucket on arn:aws:s3:::guarded-trail to the credentials of profile nobody")

    what, fix = _failure(_verify(settings, new_source(ACCOUNT, "us-east-1", "s3://guarded-trail", profile="lister")))
    assert what.startswith("reading objects is denied to the credentials of profile lister: AWSLogs/")
    assert fix == "allow s3:GetObject on arn:aws:s3:::guarded-trail/AWSLogs/* to the credentials of profile lister"

    assumed = new_source(ACCOUNT, "us-east-1", "s3://guarded-trail", profile="assumer", role_arn=role)
    verification = _verify(settings, assumed)
    assert verification.ok, verification.render()
    what, _ = _failure(_verify(settings, new_source(ACCOUNT, "us-east-1", "s3://guarded-trail", profile="assumer")))
    assert what == "listing s3://guarded-trail is denied to the credentials of profile assumer", "not without it"
    refused = new_source(ACCOUNT, "us-east-1", "s3://guarded-trail", profile="lister", role_arn=role)
    what, _ = _failure(_verify(settings, refused))
    assert "cannot assume the source's role (AccessDenied" in what and "trust policy" in what
