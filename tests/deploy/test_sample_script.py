"""deploy/compose/sample.sh, the compose stack's one-shot set-up, run for real against an S3 endpoint and a broker."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trailhouse.config import load_settings
from trailhouse.generate import account_ids
from trailhouse.registry import Registry

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "compose" / "sample.sh"
pytestmark = pytest.mark.e2e


def test_the_sample_is_generated_once_and_every_source_registered(broker, s3, s3_endpoint, aws_env, unique):
    client, bucket = s3
    client.delete_bucket(Bucket=bucket)  # the script creates it, as it does in MinIO
    env = {
        **os.environ,
        **aws_env,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "TRAILHOUSE_KAFKA_BOOTSTRAP": broker,
        "TRAILHOUSE_TOPIC_REGISTRY": f"registry-{unique}",
        "TRAILHOUSE_TOPIC_CHECKPOINTS": f"checkpoints-{unique}",
        "TRAILHOUSE_TOPIC_RAW": f"raw-{unique}",
        "TRAILHOUSE_TOPIC_EVENTS": f"events-{unique}",
        "TRAILHOUSE_TOPIC_DLQ": f"dlq-{unique}",
        "TRAILHOUSE_S3_ENDPOINT_URL": s3_endpoint,
        "SAMPLE_BUCKET": bucket,
        "SAMPLE_EVENTS": "500",
        "SAMPLE_ACCOUNTS": "2",
    }

    def run() -> str:
        result = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    assert "wrote" in run()
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert "already holds logs: no sample generated" in run()
    assert {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]} == keys

    settings = load_settings(environ={k: v for k, v in env.items() if k.startswith("TRAILHOUSE_")})
    sources = Registry(settings, broker).sources()
    assert {(s.account, s.region, s.bucket) for s in sources} == {
        (account, region, f"s3://{bucket}") for account in account_ids(2, 7) for region in ("us-east-1", "eu-west-1")
    }
