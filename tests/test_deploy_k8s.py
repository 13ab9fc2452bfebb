"""Deployment files, checked without a cluster or a Docker engine: the Kubernetes manifests
against the Kubernetes JSON schema (``kubernetes-validate``'s packaged schemas, offline, strict),
and the manifests and the compose file for what the schemas cannot see (names that must agree,
the variables the code reads). ``docker compose config`` runs when a Docker CLI is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as k8s  # type: ignore[import-untyped]

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.29.0"  # the oldest Kubernetes the manifests must suit (policy/v1 PDB, apps/v1)


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in manifests() if d["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in by_kind(kind) if d["metadata"]["name"] == name]
    return doc


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


API, MEDIA, MEDIA_GPU = "agent-assist-api", "agent-assist-media", "agent-assist-media-gpu"


def test_every_manifest_is_valid_against_the_kubernetes_schema() -> None:
    docs = manifests()
    assert {d["kind"] for d in docs} >= {
        "Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "StatefulSet", "PersistentVolumeClaim",
        "HorizontalPodAutoscaler",
    }  # fmt: skip
    for doc in docs:
        k8s.validate(doc, K8S_VERSION, strict=True)  # raises on any unknown or mistyped field
    assert {d["metadata"]["name"] for d in by_kind("Deployment")} == {API, MEDIA, MEDIA_GPU}


def test_the_schema_check_refuses_a_mistake() -> None:
    deployment = by_kind("Deployment")[0]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"
    with pytest.raises(k8s.ValidationError):
        k8s.validate(broken, K8S_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(k8s.ValidationError):
        k8s.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize(("name", "role", "service"), [
    (API, "api", "agent-assist"), (MEDIA, "media", "agent-assist-media"), (MEDIA_GPU, "media", "agent-assist-media"),
])  # fmt: skip
def test_each_deployment_agrees_with_its_service_budget_config_and_secret(
    name: str, role: str, service: str
) -> None:
    deployment = named("Deployment", name)
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
    assert labels["app.kubernetes.io/component"] == role
    container = container_of(deployment)
    command = container["command"]
    assert command[:2] == ["assist", "serve"]
    assert command[command.index("--role") + 1] == role
    env = env_of(container)
    assert env["ASSIST_ROLE"]["value"] == role  # the same role for anything that reads the environment
    port = container["ports"][0]["containerPort"]
    assert command[command.index("--port") + 1] == str(port)
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # 503 while draining
    if role == "media":  # a scale-down drains the worker's calls within the pod's grace period
        drain_s = float(env["ASSIST_DRAIN_S"]["value"])
        assert 0 < drain_s < pod["spec"]["terminationGracePeriodSeconds"]
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert selects(named("Service", service)["spec"]["selector"], labels)
    budgets = [
        b for b in by_kind("PodDisruptionBudget") if selects(b["spec"]["selector"]["matchLabels"], labels)
    ]
    assert len(budgets) == 1, [b["metadata"]["name"] for b in budgets]
    configs = {c["metadata"]["name"] for c in by_kind("ConfigMap")}
    assert container["envFrom"][0]["configMapRef"]["name"] in configs
    (secret,) = by_kind("Secret")
    for var in env.values():
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert ref["name"] == secret["metadata"]["name"]
            assert ref["key"] in secret["stringData"]
    claims = {c["metadata"]["name"]: c for c in by_kind("PersistentVolumeClaim")}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert {m["name"] for m in container["volumeMounts"]} == set(volumes)
    for volume in volumes.values():
        if "persistentVolumeClaim" in volume:  # every pod mounts the data volume: it must be shared
            claim = claims[volume["persistentVolumeClaim"]["claimName"]]
            assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        if "configMap" in volume:  # made by the operator when wanted (README.md)
            assert volume["configMap"]["name"] in configs or volume["configMap"].get("optional") is True


def test_a_service_selects_only_its_own_pods() -> None:
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in by_kind("Deployment")}
    reaches = {
        s["metadata"]["name"]: {
            name for name, labels in pods.items() if selects(s["spec"]["selector"], labels)
        }
        for s in by_kind("Service")
        if s["metadata"]["name"] != "agent-assist-redis"
    }
    assert reaches == {"agent-assist": {API}, "agent-assist-media": {MEDIA, MEDIA_GPU}}
    for name, labels in pods.items():  # no Deployment adopts another's pods
        owners = [d for d in by_kind("Deployment") if selects(d["spec"]["selector"]["matchLabels"], labels)]
        assert [d["metadata"]["name"] for d in owners] == [name]


def test_media_workers_are_named_by_their_pod_and_the_api_runs_two() -> None:
    assert named("Deployment", API)["spec"]["replicas"] == 2
    for name in (MEDIA, MEDIA_GPU):
        node = env_of(container_of(named("Deployment", name)))["ASSIST_NODE_ID"]
        assert node["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "replicas" not in named("Deployment", MEDIA)["spec"]  # the autoscaler owns it


def test_the_autoscaler_scales_the_media_workers_on_their_calls_and_gently_down() -> None:
    (hpa,) = by_kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": MEDIA}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "assist_node_calls"
    assert metric["pods"]["target"]["type"] == "AverageValue"
    assert 1 <= float(metric["pods"]["target"]["averageValue"]) <= 10
    assert hpa["spec"]["minReplicas"] >= 2
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300
    assert all(p["type"] == "Pods" and p["value"] == 1 for p in down["policies"])
    source = (ROOT / "sidecar" / "service" / "context.py").read_text(encoding="utf-8")
    assert '"assist_node_calls"' in source  # the metric the workers export
    media = named("Deployment", MEDIA)["spec"]["template"]["spec"]
    assert media["terminationGracePeriodSeconds"] >= 30


def test_the_gpu_workers_ask_for_a_gpu_and_start_with_none() -> None:
    deployment = named("Deployment", MEDIA_GPU)
    assert deployment["spec"]["replicas"] == 0
    pod = deployment["spec"]["template"]["spec"]
    container = container_of(deployment)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert pod["nodeSelector"]
    env = env_of(container)
    assert env["ASSIST_ASR_DEVICE"]["value"] == "cuda"
    assert env["ASSIST_ASR_COMPUTE_TYPE"]["value"] == "float16"
    assert int(env["ASSIST_ASR_BATCH"]["value"]) > 1


def test_redis_persists_and_the_nodes_find_it() -> None:
    services = {s["metadata"]["name"] for s in by_kind("Service")}
    config = named("ConfigMap", "agent-assist-config")
    redis_host = re.match(r"redis://([^:/]+):(\d+)", config["data"]["REDIS_URL"])
    assert redis_host is not None
    assert redis_host[1] in services
    (redis,) = by_kind("StatefulSet")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert redis["spec"]["volumeClaimTemplates"]


def code_source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for d in ("sidecar", "coach", "knowledge", "models")
                     for p in (ROOT / d).rglob("*.py"))  # fmt: skip


LIBRARY_VARIABLES = {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}  # read by huggingface_hub / transformers


def unread(names: set[str], source: str) -> set[str]:
    return {n for n in names - LIBRARY_VARIABLES if f'"{n}"' not in source and f"'{n}'" not in source}


def test_the_variables_the_manifests_set_are_read_by_the_code() -> None:
    config = named("ConfigMap", "agent-assist-config")
    names = set(config["data"])
    expanded: set[str] = set()  # read by the manifest itself, in another variable's $(NAME)
    for deployment in by_kind("Deployment"):
        env = env_of(container_of(deployment))
        names |= set(env)
        expanded |= {n for n in env for e in env.values() if f"$({n})" in str(e.get("value", ""))}
    missing = unread(names - expanded, code_source())
    assert not missing, f"set but read nowhere: {sorted(missing)}"


def test_a_worker_tells_asterisk_its_own_audiosocket_address() -> None:
    """A leg is registered through the media Service (any worker) and Asterisk must then dial that
    same worker: each pod advertises its own IP, on the port it listens on."""
    for name in ("agent-assist-media", "agent-assist-media-gpu"):
        container = container_of(named("Deployment", name))
        env = env_of(container)
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        port = env["ASSIST_AUDIOSOCKET_PORT"]["value"]
        assert env["ASSIST_AUDIOSOCKET_ADVERTISE"]["value"] == f"$(POD_IP):{port}"
        assert env["ASSIST_AUDIOSOCKET_HOST"]["value"] == "0.0.0.0"
        names = [e["name"] for e in container["env"]]
        assert names.index("POD_IP") < names.index("ASSIST_AUDIOSOCKET_ADVERTISE")  # expanded in order
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["audiosocket"] == int(port)


def test_the_variables_the_compose_file_sets_are_read_by_the_code() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    names = {n for s in compose["services"].values() for n in s.get("environment", {})}
    missing = unread(names, code_source())
    assert not missing, f"set but read nowhere: {sorted(missing)}"


COMPOSE_SCHEMA = {  # the part of the Compose specification this file uses
    "type": "object",
    "required": ["services"],
    "properties": {
        "name": {"type": "string"},
        "services": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "anyOf": [{"required": ["image"]}, {"required": ["build"]}],
                "additionalProperties": False,
                "properties": {
                    "image": {"type": "string"},
                    "build": {"type": "object", "required": ["context"]},
                    "command": {"type": "array", "items": {"type": "string"}},
                    "entrypoint": {"type": "array", "items": {"type": "string"}},
                    "ports": {"type": "array", "items": {"type": "string"}},
                    "environment": {"type": "object", "additionalProperties": {"type": "string"}},
                    "volumes": {"type": "array", "items": {"type": "string"}},
                    "depends_on": {"type": "object"},
                    "healthcheck": {"type": "object", "required": ["test"]},
                    "restart": {"type": "string"},
                    "stop_grace_period": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                },
            },
        },
        "volumes": {"type": "object"},
    },
    "patternProperties": {"^x-": {}},  # extension fields: the nodes' shared settings (YAML anchors)
    "additionalProperties": False,
}


def test_the_compose_file_is_well_formed() -> None:
    import jsonschema  # type: ignore[import-untyped]  # kubernetes-validate's dependency

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    jsonschema.validate(compose, COMPOSE_SCHEMA)
    services = compose["services"]
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert set(service.get("depends_on") or {}) <= set(services), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith((".", "/")) or source in declared, (
                f"{name}: volume {source} not declared"
            )


def has_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(not has_compose(), reason="no Docker CLI with the compose plugin on this machine")
def test_docker_compose_config_accepts_the_compose_file() -> None:
    result = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
