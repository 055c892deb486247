"""deploy/k8s: valid Kubernetes objects (offline, against Kubernetes' own schemas) wired the way trailhouse runs."""

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from trailhouse.config import Settings, env_name, load_settings
from trailhouse.health import DEFAULT_PORTS

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"


def documents() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def deployments() -> dict[str, dict]:
    """Each stage's workload: Deployments, and the workers' StatefulSet."""
    return {
        d["spec"]["template"]["spec"]["containers"][0]["name"]: d
        for d in documents()
        if d["kind"] in ("Deployment", "StatefulSet")
    }


def test_the_kustomization_lists_every_manifest_in_the_folder():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


@pytest.mark.parametrize("document", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_each_object_is_valid_kubernetes(document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_one_deployment_per_stage_running_that_stage():
    assert set(deployments()) == set(DEFAULT_PORTS)
    for stage, deployment in deployments().items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == [stage]
        assert container["image"] == "trailhouse"  # set by the kustomization's `images`
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_probes_use_each_stages_health_endpoints():
    for stage, deployment in deployments().items():
        template = deployment["spec"]["template"]
        container = template["spec"]["containers"][0]
        assert container["ports"] == [{"name": "http", "containerPort": DEFAULT_PORTS[stage], "protocol": "TCP"}]
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert container[probe]["httpGet"] == {"path": path, "port": "http"}, (stage, probe)
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(DEFAULT_PORTS[stage])


def test_resources_security_and_shutdown_time_are_set():
    for stage, deployment in deployments().items():
        spec = deployment["spec"]["template"]["spec"]
        container = spec["containers"][0]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), stage
        assert "memory" in container["resources"]["limits"], stage
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] == 10001
        assert container["securityContext"]["readOnlyRootFilesystem"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/var/lib/trailhouse", "/tmp"} <= mounts, "the data directory and /tmp must stay writable"
        assert spec["terminationGracePeriodSeconds"] >= 60, "time to finish the batch, commit and leave the group"
        assert spec["terminationGracePeriodSeconds"] > Settings().stop_timeout, "the stage ends its own stop first"


def test_each_worker_keeps_its_own_volume_for_its_rocksdb_tables():
    worker = deployments()["worker"]
    assert worker["kind"] == "StatefulSet"
    claims = {c["metadata"]["name"]: c["spec"] for c in worker["spec"]["volumeClaimTemplates"]}
    container = worker["spec"]["template"]["spec"]["containers"][0]
    data = next(m for m in container["volumeMounts"] if m["mountPath"] == "/var/lib/trailhouse")
    assert claims[data["name"]]["accessModes"] == ["ReadWriteOnce"]
    assert data["name"] not in {v["name"] for v in worker["spec"]["template"]["spec"]["volumes"]}
    services = {d["metadata"]["name"]: d for d in documents() if d["kind"] == "Service"}
    assert services[worker["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"


def test_a_single_poller_that_is_never_doubled_during_a_rollout():
    poll = deployments()["poll"]["spec"]
    assert poll["replicas"] == 1 and poll["strategy"] == {"type": "Recreate"}


def test_config_map_and_secret_hold_settings_trailhouse_accepts():
    objects = {(d["kind"], d["metadata"]["name"]): d for d in documents()}
    for deployment in deployments().values():
        sources = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert {("ConfigMap", s["configMapRef"]["name"]) for s in sources if "configMapRef" in s} <= set(objects)
        assert {("Secret", s["secretRef"]["name"]) for s in sources if "secretRef" in s} <= set(objects)
    environ = {**objects[("ConfigMap", "trailhouse")]["data"], **objects[("Secret", "trailhouse")]["stringData"]}
    known = {env_name(name) for name in Settings.__dataclass_fields__}
    assert set(environ) <= known, f"not settings: {set(environ) - known}"
    settings = load_settings(environ=environ)  # raises ConfigError on anything trailhouse would refuse
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_sasl_password
