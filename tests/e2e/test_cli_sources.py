"""`trailhouse sources apply` and `sources verify` as a user runs them (embedded broker, registry kept in the data
directory between commands)."""

import gzip
import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.cli import Trailhouse
from trailhouse.generate import folder_writer

pytestmark = pytest.mark.e2e

ROLE = "arn:aws:iam::999988887777:role/trailhouse"


def _sources(*entries: str) -> str:
    return "\n".join(f"[[sources]]\n{entry}" for entry in entries)


def test_apply_shows_the_difference_dry_run_writes_nothing_and_the_registry_follows_the_file(tmp_path):
    trailhouse = Trailhouse(tmp_path / "data", {})
    path = tmp_path / "sources.toml"
    a = 'account = "1111-2222-3333"\nregion = "us-east-1"\nbucket = "s3://trail"\n'
    b = 'account = "444455556666"\nregion = "eu-west-1"\nbucket = "s3://trail"\norg_id = "o-a1b2c3d4e5"\n'
    path.write_text(_sources(a, b))

    dry = trailhouse("sources", "apply", str(path), "--dry-run").stdout.splitlines()
    assert dry == [
        "+ cloudtrail-111122223333-us-east-1  s3://trail",
        "+ cloudtrail-444455556666-eu-west-1  s3://trail (org_id o-a1b2c3d4e5)",
        "2 to add, 0 to update, 0 to remove, 0 unchanged (dry run: nothing written)",
    ]
    assert "no sources registered" in trailhouse("sources", "list").stdout

    trailhouse("sources", "apply", str(path))
    assert trailhouse("sources", "list").stdout.count("cloudtrail-") == 2

    c = 'account = "777788889999"\nregion = "us-east-2"\nbucket = "s3://trail"\n'
    path.write_text(_sources(a.replace("s3://trail", "s3://other-trail") + f'role_arn = "{ROLE}"\n', c))
    changed = trailhouse("sources", "apply", str(path)).stdout.splitlines()
    assert changed == [
        f"~ cloudtrail-111122223333-us-east-1  bucket s3://trail -> s3://other-trail; role_arn - -> {ROLE}",
        "- cloudtrail-444455556666-eu-west-1",
        "+ cloudtrail-777788889999-us-east-2  s3://trail",
        "1 to add, 1 to update, 1 to remove, 0 unchanged",
    ]
    listed = trailhouse("sources", "list").stdout
    assert "444455556666" not in listed and f"role {ROLE}" in listed and "s3://other-trail" in listed
    assert trailhouse("sources", "apply", str(path)).stdout.strip() == "0 to add, 0 to update, 0 to remove, 2 unchanged"

    path.write_text(_sources('account = "123"\nregion = "us-east-1"\nbucket = "s3://trail"\n'))
    refused = trailhouse("sources", "apply", str(path), ok=False)
    assert refused.returncode == 2 and "source #1" in refused.stderr and "Traceback" not in refused.stderr


def test_verify_says_what_is_wrong_with_each_source_and_exits_1(tmp_path):
    trailhouse = Trailhouse(tmp_path / "data", {})
    bucket = tmp_path / "bucket"
    now = datetime.now(UTC) - timedelta(minutes=10)
    key = (
        f"AWSLogs/111122223333/CloudTrail/eu-west-1/{now:%Y/%m/%d}/"
        f"111122223333_CloudTrail_eu-west-1_{now:%Y%m%dT%H%M}Z_v.json.gz"
    )
    folder_writer(bucket)(key, gzip.compress(json.dumps({"Records": [{"eventID": "1"}]}).encode()))
    trailhouse("sources", "add", "--account", "111122223333", "--region", "eu-west-1", "--bucket", f"file://{bucket}")

    good = trailhouse("sources", "verify", "cloudtrail-111122223333-eu-west-1")
    assert "FAIL" not in good.stdout and f"read {key}: 1 record(s)" in good.stdout

    trailhouse("sources", "add", "--account", "111122223333", "--region", "us-east-1", "--bucket", f"file://{bucket}")
    trailhouse("sources", "add", "--account", "111122223333", "--region", "us-west-2", "--bucket", "file:///no/such")
    every = trailhouse("sources", "verify", ok=False)
    assert every.returncode == 1, every.stdout
    assert "FAIL no log files for us-east-1, while files exist for region(s) eu-west-1" in every.stdout
    assert "fix: did you mean eu-west-1?" in every.stdout
    assert "FAIL folder file:///no/such does not exist" in every.stdout

    unknown = trailhouse("sources", "verify", "cloudtrail-000000000000-us-east-1", ok=False)
    assert unknown.returncode == 2 and "sources list" in unknown.stderr and "Traceback" not in unknown.stderr
