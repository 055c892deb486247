"""deploy/Dockerfile read as text (no Docker engine here), and the health probe its HEALTHCHECK runs."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from trailhouse.health import Health, HealthServer
from trailhouse.processes import free_port

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "deploy" / "Dockerfile").read_text()


def stages() -> list[list[str]]:
    """Instructions (continuation lines joined) of each build stage."""
    lines = re.sub(r"\\\n\s*", " ", DOCKERFILE).splitlines()
    result: list[list[str]] = []
    for line in (" ".join(line.split()) for line in lines):
        if line.startswith("FROM "):
            result.append([])
        if result and line and not line.startswith("#"):
            result[-1].append(line)
    return result


def test_two_stages_on_a_pinned_base():
    build, final = stages()
    assert build[0].startswith("FROM ${PYTHON_IMAGE} AS build") and final[0] == "FROM ${PYTHON_IMAGE}"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), f"base image not pinned to a release: {base}"


def test_the_final_image_has_no_build_tools_and_runs_as_a_user():
    _, final = stages()
    text = "\n".join(final)
    assert "apt-get" not in text and "build-essential" not in text and "pip install" not in text
    assert "COPY --from=build /opt/trailhouse /opt/trailhouse" in final
    user = next(line for line in final if line.startswith("USER "))
    assert user.split()[1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["trailhouse"]' in final
    healthcheck = next(line for line in final if line.startswith("HEALTHCHECK "))
    assert healthcheck.endswith('CMD ["python", "-m", "trailhouse.probe"]')
    assert "TRAILHOUSE_HTTP_BIND=0.0.0.0" in text, "the stages must listen beyond the container's loopback"


def test_every_package_is_copied_and_the_embedded_stack_left_out():
    build, _ = stages()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    for package in project["tool"]["setuptools"]["packages"]:
        assert f"COPY {package} ./{package}" in build, package
    assert "RUN /opt/trailhouse/bin/pip install . && /opt/trailhouse/bin/trailhouse --version" in build
    ignored = (REPO / ".dockerignore").read_text().split()
    assert not set(project["tool"]["setuptools"]["packages"]) & set(ignored)


def probe(port: int | str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "TRAILHOUSE_HTTP_PORT": str(port)}
    return subprocess.run([sys.executable, "-m", "trailhouse.probe"], env=env, capture_output=True, text=True)


def test_the_probe_passes_only_while_the_stage_is_live():
    health = Health("sink", stall_after_s=60)
    server = HealthServer(health, "127.0.0.1", free_port())
    try:
        assert probe(server.port).returncode == 0
        health.failed("ClickHouse refused the migration")
        result = probe(server.port)
        assert result.returncode == 1 and "503" in result.stderr
    finally:
        server.close()
    assert probe(server.port).returncode == 1  # nothing listens
    assert probe(0).returncode == 0  # no server configured: nothing to probe
