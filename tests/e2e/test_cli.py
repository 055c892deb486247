"""The command line end to end on generated logs: several accounts, an s3:// and a file:// source."""

import csv
import gzip
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from sinks.search import RESULT_COLUMNS
from tests.e2e.cli import Trailhouse

pytestmark = pytest.mark.e2e


def _records_per_account(files: list[tuple[str, bytes]]) -> Counter[str]:
    """Records per account of the key, read straight from the generated files."""
    counts: Counter[str] = Counter()
    for (account, _), n in _records_per_account_and_region(files).items():
        counts[account] += n
    return counts


def _records_per_account_and_region(files: list[tuple[str, bytes]]) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for key, body in files:
        parts = key.split("/")
        at = parts.index("AWSLogs")
        counts[(parts[at + 1], parts[at + 3])] += len(json.loads(gzip.decompress(body))["Records"])
    return counts


def _s3_files(client, bucket) -> list[tuple[str, bytes]]:
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    return [(k, client.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys]


def _folder_files(root: Path) -> list[tuple[str, bytes]]:
    return [(str(p.relative_to(root)), p.read_bytes()) for p in sorted(root.rglob("*.json.gz"))]


def test_generated_logs_of_several_accounts_from_s3_and_a_folder(s3, s3_endpoint, tmp_path, aws_env):
    client, bucket = s3
    folder = tmp_path / "synced-bucket"
    trailhouse = Trailhouse(tmp_path / "data", {**aws_env, "TRAILHOUSE_S3_ENDPOINT_URL": s3_endpoint})

    trailhouse(
        "generate",
        f"s3://{bucket}",
        "--events",
        "3000",
        "--accounts",
        "3",
        "--seed",
        "1",
        "--regions",
        "us-east-1,eu-west-1",
    )
    trailhouse("generate", str(folder), "--events", "1000", "--accounts", "2", "--seed", "2")
    in_s3 = _records_per_account(_s3_files(client, bucket))
    in_folder = _records_per_account(_folder_files(folder))
    assert sum(in_s3.values()) == 3000 and sum(in_folder.values()) == 1000
    assert "123456789012" in in_s3

    s3_accounts = sorted(in_s3)
    for account in s3_accounts:
        trailhouse("sources", "add", "--account", account, "--region", "us-east-1", "--bucket", f"s3://{bucket}")
        trailhouse("sources", "add", "--account", account, "--region", "eu-west-1", "--bucket", f"s3://{bucket}")
    folder_account = next(a for a in in_folder if a != "123456789012")
    assert folder_account not in in_s3
    trailhouse("sources", "add", "--account", folder_account, "--region", "us-east-1", "--bucket", f"file://{folder}")
    listed = trailhouse("sources", "list").stdout
    assert listed.count("cloudtrail-") == 2 * len(s3_accounts) + 1

    done = trailhouse("run", "--once")
    expected_total = sum(in_s3.values()) + in_folder[folder_account]
    assert f"{expected_total:,} record(s) ingested and searchable" in done.stdout

    for account, records in [*in_s3.items(), (folder_account, in_folder[folder_account])]:
        assert trailhouse("search", f"source:cloudtrail-{account}-*", "--count").stdout.strip() == str(records)
    rows = trailhouse("search", "*123456789012*", "--limit", "5").stdout.splitlines()
    assert rows[0].split()[:2] == ["EVENT_TIME", "RECIPIENT_ACCOUNT_ID"] and len(rows) == 6

    per_region = _records_per_account_and_region(_s3_files(client, bucket))
    account = s3_accounts[-1]
    narrowed = trailhouse("search", "*", "--account", account, "--region", "eu-west-1", "--count").stdout
    assert int(narrowed) == per_region[(account, "eu-west-1")] > 0
    table = list(
        csv.reader(io.StringIO(trailhouse("search", f"*{account}*", "--format", "csv", "--limit", "3").stdout))
    )
    assert table[0] == [*RESULT_COLUMNS, "record"] and len(table) == 4
    assert all(account in row and json.loads(row[-1])["eventID"] == row[1] for row in table[1:])
    describes = int(trailhouse("search", "eventName:Describe*", "--count").stdout)
    others = int(trailhouse("search", "NOT", "eventName:Describe*", "--count").stdout)
    assert describes > 0 and describes + others == expected_total

    status = trailhouse("sources", "status").stdout
    assert status.count(" ONLINE ") == 2 * len(s3_accounts) + 1

    again = trailhouse("run", "--once")
    assert "0 new file(s), 0 record(s)" in again.stdout
    assert trailhouse("search", "*", "--count").stdout.strip() == str(expected_total)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--account", "1234-5678-901", "--region", "us-east-1", "--bucket", "s3://b-1"], "exactly 12 digits"),
        (
            ["--account", "123456789012", "--region", "us-est-1", "--bucket", "s3://b-1"],
            "did you mean us-west-1, us-east-1",
        ),
        (["--account", "123456789012", "--region", "us-east-1", "--bucket", "s3://b-1/logs"], "--prefix logs"),
    ],
)
def test_a_bad_registration_is_refused_with_words_and_exit_code_2(tmp_path, args, message):
    result = Trailhouse(tmp_path / "data", {})("sources", "add", *args, ok=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_search_is_refused_with_words(tmp_path):
    result = Trailhouse(tmp_path / "data", {})("search", '"unclosed', ok=False)
    assert result.returncode == 2 and "close the quote" in result.stderr and "Traceback" not in result.stderr


def test_a_single_stage_without_a_shared_kafka_says_what_to_do(tmp_path):
    result = Trailhouse(tmp_path / "data", {})("poll", ok=False)
    assert result.returncode == 2 and "--kafka-bootstrap" in result.stderr


def test_migrate_prints_the_cluster_ddl_for_review_without_connecting(tmp_path):
    out = Trailhouse(tmp_path / "data", {})("migrate", "--print", "--cluster", "prod").stdout
    assert "CREATE TABLE IF NOT EXISTS trailhouse.events_local ON CLUSTER prod" in out
    assert "ENGINE = Distributed('prod', 'trailhouse', 'events_local', cityHash64(event_id))" in out
    assert not (tmp_path / "data" / "clickhouse").exists()


def test_a_bad_retention_is_refused_with_words(tmp_path):
    result = Trailhouse(tmp_path / "data", {})("migrate", "--retention", "400 days", ok=False)
    assert result.returncode == 2 and "400d, 52w, 7y" in result.stderr and "Traceback" not in result.stderr
