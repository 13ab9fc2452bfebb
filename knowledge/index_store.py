"""The snippet index saved in a directory: ``index.faiss`` (either kind of FAISS index) and
``ids.json`` (the rows, the embedder, the store revision, a digest of the embedded texts).

Each file is written to a temporary file, fsynced, then ``os.replace``d. ``read_saved`` returns the
saved index only when the format, the embedder name and dimension, the store revision, the set of
published ids and the digest of their text all match, and the FAISS file agrees with ``ids.json``;
otherwise it says why not (the caller rebuilds).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss

from knowledge.faiss_index import HASHTABLE, default_nprobe, index_ids, index_kind
from knowledge.snippets import Snippet
from knowledge.vector_index import Row

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
FORMAT_VERSION = 1


# a built or loaded index: (FAISS index, rows, next id, rows the IVF was trained on (0: flat))
State = tuple[Any, dict[str, Row], int, int]


def digest(pairs: Iterable[tuple[str, str]]) -> str:
    """One sha256 over (snippet id, text sha) pairs, in any order."""
    h = hashlib.sha256()
    for snippet_id, sha in sorted(pairs):
        h.update(f"{snippet_id}\0{sha}\n".encode())
    return h.hexdigest()


def rows_digest(rows: Mapping[str, Row]) -> str | None:
    """The digest of these rows' texts; None when a row's text is unknown."""
    if any(not r.text_sha for r in rows.values()):
        return None
    return digest((sid, r.text_sha) for sid, r in rows.items())


def saved_meta(
    rows: Mapping[str, Row],
    *,
    embedder: str,
    dim: int,
    revision: int | None,
    next_id: int,
    index: Any,
    trained_n: int,
) -> dict[str, Any]:
    """What ``ids.json`` holds for this index (call it under the index lock: it copies the rows)."""
    return {
        "format": FORMAT_VERSION,
        "embedder": embedder,
        "dim": dim,
        "revision": revision,
        "next_id": next_id,
        "ntotal": int(index.ntotal),
        "kind": index_kind(index),
        "trained_n": trained_n,
        "digest": rows_digest(rows),
        "ids": {sid: [r.int_id, r.title, r.lang, r.text_sha] for sid, r in rows.items()},
    }


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_saved(directory: Path, data: Any, meta: dict[str, Any]) -> None:
    """Write a serialised FAISS index (``faiss.serialize_index``) and its ``saved_meta``."""
    write_atomic(directory / INDEX_FILE, lambda p: p.write_bytes(data.tobytes()))
    text = json.dumps(meta, ensure_ascii=False)
    write_atomic(directory / IDS_FILE, lambda p: p.write_text(text, encoding="utf-8"))


def read_saved(
    directory: Path,
    *,
    embedder: str,
    dim: int,
    revision: int,
    published: Sequence[Snippet],
    text_sha: Callable[[Snippet], str],
    nprobe: int | None,
) -> tuple[State | None, str]:
    """(state, "") when the files match the store, else (None, why not). ``text_sha``: the sha1
    of what is embedded for a snippet; ``nprobe`` as set on the index (None: the default for its
    ``nlist``)."""
    ids_path, index_path = directory / IDS_FILE, directory / INDEX_FILE
    if not ids_path.exists() or not index_path.exists():
        return None, "no saved index"
    try:
        meta = json.loads(ids_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_VERSION:
            return None, f"saved format {meta.get('format')!r}, expected {FORMAT_VERSION}"
        if meta.get("embedder") != embedder or meta.get("dim") != dim:
            return None, (
                f"saved for embedder {meta.get('embedder')!r} ({meta.get('dim')}-d), "
                f"now {embedder!r} ({dim}-d)"
            )
        if meta.get("revision") != revision:
            return None, f"saved at store revision {meta.get('revision')}, the store is at {revision}"
        rows = {sid: Row(int(v[0]), str(v[1]), str(v[2]), str(v[3])) for sid, v in meta["ids"].items()}
        if set(rows) != {s.id for s in published}:
            return None, "the saved snippet ids differ from the store's published ones"
        if meta.get("digest") != digest((s.id, text_sha(s)) for s in published):
            return None, "the saved snippet texts differ from the store's"
        index: Any = faiss.read_index(str(index_path))
        if isinstance(index, faiss.IndexIVFFlat):
            ok = index.metric_type == faiss.METRIC_INNER_PRODUCT and bool(index.is_trained)
            if ok and index.direct_map.type != HASHTABLE:
                index.set_direct_map_type(HASHTABLE)
            trained_n = int(meta.get("trained_n") or index.ntotal)
        else:
            ok = isinstance(index, faiss.IndexIDMap2)
            trained_n = 0
        if (
            not ok
            or index.d != dim
            or sorted(int(i) for i in index_ids(index)) != sorted(r.int_id for r in rows.values())
        ):
            return None, f"{INDEX_FILE} does not match {IDS_FILE}"
        if trained_n:
            index.nprobe = nprobe or default_nprobe(int(index.nlist))
        next_id = max(int(meta["next_id"]), max((r.int_id for r in rows.values()), default=0) + 1)
    except (OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
        return None, f"cannot read the saved index ({exc})"
    return (index, rows, next_id, trained_n), ""
