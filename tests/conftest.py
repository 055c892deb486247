"""Fixtures that start real components: a Tansu broker, a moto S3 server, a chDB engine; and the real CloudTrail
files of ../shared/data. Each is started once per session and isolated per test by unique names (topics,
consumer groups, buckets, ClickHouse databases)."""

from __future__ import annotations

import gzip
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from trailhouse.config import Settings
from trailhouse.embedded import EmbeddedKafka
from trailhouse.embedded_s3 import DEMO_CREDENTIALS, local_s3

REPO = Path(__file__).resolve().parents[1]

# Stages serve /healthz and /metrics on fixed ports by default; several test sessions share this machine, so the
# stages the tests start serve none unless a test gives them a free port.
os.environ.setdefault("TRAILHOUSE_HTTP_PORT", "0")
os.environ.setdefault("TRAILHOUSE_WORKER_WEB_PORT", "0")  # any free port: several workers and sessions share the host
REAL_DATA_ACCOUNT = "218007301253"
REAL_DATA_PREFIX = f"AWSLogs/{REAL_DATA_ACCOUNT}/CloudTrail/us-east-1/2023/07/10/"


def shared_data_dir() -> Path:
    configured = os.environ.get("TRAILHOUSE_SHARED_DATA")
    path = Path(configured) if configured else REPO.parent / "shared" / "data"
    return path / "invictus-stratus-2023"


@pytest.fixture(scope="session")
def real_files() -> list[Path]:
    """The 55 real CloudTrail files (uncompressed JSON) of ../shared/data."""
    files = sorted(shared_data_dir().glob("*.json"))
    if not files:
        pytest.fail(f"no CloudTrail files in {shared_data_dir()}: the tests need ../shared beside the repository")
    return files


@pytest.fixture(scope="session")
def real_records(real_files: list[Path]) -> list[dict]:
    return [record for f in real_files for record in json.loads(f.read_text())["Records"]]


def lay_out_real_files(files: list[Path], put) -> None:
    """Gzip each real file under the key a trail would have written it to."""
    for f in files:
        put(REAL_DATA_PREFIX + f.name + ".gz", gzip.compress(f.read_bytes(), mtime=0))


def wait_drained(settings: Settings, broker: str, group: str, topic: str, timeout: float = 120.0) -> None:
    """Poll until `group` has committed everything `topic` holds now (no sleeps of fixed length)."""
    from trailhouse.kafka import committed_offsets, end_offsets, is_drained

    ends = end_offsets(settings, broker, topic)
    deadline = time.monotonic() + timeout
    while not is_drained(committed_offsets(settings, broker, group, topic), ends):
        if time.monotonic() > deadline:
            pytest.fail(f"{group} did not catch up with {topic} within {timeout:.0f}s")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def aws_env() -> Iterator[dict[str, str]]:
    """Credentials for the local S3 endpoint only; real ones must never reach it."""
    saved = {k: os.environ.get(k) for k in (*DEMO_CREDENTIALS, "AWS_PROFILE")}
    os.environ.update(DEMO_CREDENTIALS)
    os.environ.pop("AWS_PROFILE", None)
    yield dict(DEMO_CREDENTIALS)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def s3_endpoint(aws_env: dict[str, str]) -> Iterator[str]:
    with local_s3() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str):
    """A boto3 client of the local S3 endpoint and a fresh bucket name for this test."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    bucket = f"trail-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Tansu broker on a free loopback port, for the whole session."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("broker"))
    with EmbeddedKafka(settings) as kafka:
        yield kafka.bootstrap


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(tmp_path: Path, unique: str, s3_endpoint: str) -> Settings:
    """Settings whose topics, groups and database belong to this test alone."""
    return Settings(
        data_dir=tmp_path / "data",
        topic_raw=f"raw-{unique}",
        topic_events=f"events-{unique}",
        topic_dlq=f"dlq-{unique}",
        topic_alerts=f"alerts-{unique}",
        topic_sources=f"sources-{unique}",
        topic_registry=f"registry-{unique}",
        topic_checkpoints=f"checkpoints-{unique}",
        topic_insights=f"insights-{unique}",
        worker_group=f"worker-{unique}",
        poll_group=f"poll-{unique}",
        sink_group=f"sink-{unique}",
        clickhouse_database=f"db_{unique}",
        s3_endpoint_url=s3_endpoint,
        s3_region="us-east-1",
        sink_batch_seconds=0.2,
    )


@pytest.fixture
def topics(settings: Settings, broker: str) -> str:
    """This test's topics, created on the session broker; returns the bootstrap address."""
    from trailhouse.kafka import ensure_topics

    ensure_topics(settings, broker)
    return broker


@pytest.fixture(scope="session")
def chdb_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One chDB directory for the session: chDB allows one data path per process; tests use their own database."""
    return f"chdb://{tmp_path_factory.mktemp('clickhouse')}"


@pytest.fixture
def clickhouse(chdb_dsn: str, settings: Settings):
    from sinks.clickhouse import connect
    from sinks.ddl import Layout
    from sinks.migrations import migrate

    client = connect(chdb_dsn)
    migrate(client, Layout(settings.clickhouse_database))
    yield client
    client.command(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
