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


def test_every_manifest_is_valid_against_the_kubernetes_schema() -> None:
    docs = manifests()
    assert {d["kind"] for d in docs} >= {
        "Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "StatefulSet", "PersistentVolumeClaim",
    }  # fmt: skip
    for doc in docs:
        k8s.validate(doc, K8S_VERSION, strict=True)  # raises on any unknown or mistyped field


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


def test_the_service_deployment_agrees_with_its_service_budget_config_and_redis() -> None:
    (deployment,) = by_kind("Deployment")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    assert container["command"][:2] == ["assist", "serve"]
    port = container["ports"][0]["containerPort"]
    assert container["command"][container["command"].index("--port") + 1] == str(port)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]
    services = {s["metadata"]["name"]: s for s in by_kind("Service")}
    assert services["agent-assist"]["spec"]["selector"].items() <= labels.items()
    (budget,) = by_kind("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (config,) = by_kind("ConfigMap")
    assert container["envFrom"][0]["configMapRef"]["name"] == config["metadata"]["name"]
    (secret,) = by_kind("Secret")
    for env in container["env"]:
        ref = env["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    redis_host = re.match(r"redis://([^:/]+):(\d+)", config["data"]["REDIS_URL"])
    assert redis_host is not None
    assert redis_host[1] in services
    (redis,) = by_kind("StatefulSet")
    assert "--appendonly" in redis["spec"]["template"]["spec"]["containers"][0]["args"]
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts == {v["name"] for v in pod["spec"]["volumes"]}


def test_the_variables_the_manifests_set_are_read_by_the_code() -> None:
    (config,) = by_kind("ConfigMap")
    (deployment,) = by_kind("Deployment")
    names = set(config["data"]) | {
        e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    source = "\n".join(p.read_text(encoding="utf-8") for d in ("sidecar", "coach", "knowledge", "models")
                       for p in (ROOT / d).rglob("*.py"))  # fmt: skip
    library = {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}  # read by huggingface_hub / transformers
    unread = {n for n in names - library if f'"{n}"' not in source and f"'{n}'" not in source}
    assert not unread, f"set but read nowhere: {sorted(unread)}"


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
