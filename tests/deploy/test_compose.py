"""docker-compose.yml: valid Compose, and the fields trailhouse relies on (no Docker engine is needed)."""

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from trailhouse.config import load_settings
from trailhouse.health import DEFAULT_PORTS

REPO = Path(__file__).resolve().parents[2]
STAGES = ("poll", "worker", "sink")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_it_is_valid_against_the_compose_specification(compose):
    schema = json.loads((Path(__file__).parent / "compose-spec.json").read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(compose)


def docker_compose() -> list[str] | None:
    """`docker compose` (v2 plugin) or `docker-compose` (v1), whichever is installed; None when neither is."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.skipif(docker_compose() is None, reason="neither `docker compose` nor `docker-compose` is installed")
def test_docker_compose_config_accepts_it():
    """`config` parses, interpolates and validates the file without talking to a Docker engine."""
    command = docker_compose()
    assert command is not None
    result = subprocess.run(
        [*command, "-f", str(REPO / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr


def test_kafka_is_apache_kafka_in_kraft_mode_with_one_broker(compose):
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert kafka["image"].startswith("apache/kafka:")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16, "CLUSTER_ID must be a base64 UUID"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "trailhouse creates its own topics"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert any(v.endswith(":" + env["KAFKA_LOG_DIRS"]) for v in kafka["volumes"])


def test_clickhouse_has_a_user_a_password_a_volume_and_the_http_port(compose):
    clickhouse = compose["services"]["clickhouse"]
    assert clickhouse["environment"]["CLICKHOUSE_USER"] == "trailhouse"
    assert clickhouse["environment"]["CLICKHOUSE_PASSWORD"]
    assert any(v.endswith(":/var/lib/clickhouse") for v in clickhouse["volumes"])
    assert "8123:8123" in clickhouse["ports"]


def test_every_service_is_pinned_and_healthy_before_its_dependents_start(compose):
    services = compose["services"]
    for name, service in services.items():
        assert ":" in service["image"] and not service["image"].endswith(":latest"), name
        for dependency, condition in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency == "sample" else "service_healthy"
            assert condition == {"condition": expected}, (name, dependency)
            if expected == "service_healthy":
                assert "test" in services[dependency]["healthcheck"], dependency
    assert set(services["sink"]["depends_on"]) == {"kafka", "clickhouse"}
    assert set(services["worker"]["depends_on"]) == {"kafka"}
    assert set(services["poll"]["depends_on"]) == {"kafka", "sample"}
    assert set(services["sample"]["depends_on"]) == {"kafka", "minio"}


def test_the_stages_run_the_image_with_settings_trailhouse_accepts(compose):
    for stage in STAGES:
        service = compose["services"][stage]
        assert service["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
        assert service["command"] == [stage]
        assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "trailhouse.probe"]
        environ = {k: interpolated(str(v)) for k, v in service["environment"].items()}
        settings = load_settings(environ=environ)  # raises ConfigError on any setting trailhouse would refuse
        assert settings.kafka_bootstrap == "kafka:9092"
        assert settings.clickhouse_url.startswith("http://trailhouse:")
        assert settings.s3_endpoint_url == "http://minio:9000"
        grace = service["stop_grace_period"]
        assert grace.endswith("s") and float(grace[:-1]) > settings.stop_timeout, "the stage ends its own stop first"


def interpolated(value: str) -> str:
    """`${VAR:-default}` as Compose resolves it when VAR is unset."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", value)


def test_workers_can_be_scaled(compose):
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker, "--scale worker=3 needs neither"
    assert "volumes" not in worker, "replicas would share one volume, and RocksDB locks its directory"
    assert DEFAULT_PORTS["worker"] == 9402  # each replica serves /healthz in its own network namespace


def test_the_sample_service_mounts_the_script_it_runs(compose):
    sample = compose["services"]["sample"]
    assert sample["restart"] == "no"
    script = sample["entrypoint"][-1]
    assert any(v == f"./deploy/compose/sample.sh:{script}:ro" for v in sample["volumes"])
    assert (REPO / "deploy/compose/sample.sh").is_file()
