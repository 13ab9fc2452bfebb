"""A FAISS inner-product index of the published snippets, kept in step with a ``SnippetStore``.

Contract:

- Each published snippet is one row: its title, tags and body embedded as an e5 *passage*
  (``embed(..., query=False)``); queries are embedded with ``query=True``. Rows are L2-normalised,
  so a score is the cosine. Drafts are never indexed (a snippet going back to draft leaves).
- Rows live in ``faiss.IndexIDMap2(faiss.IndexFlatIP(dim))`` under int64 ids from a counter that
  only grows: every add (a new snippet, or a new version of one) takes a fresh id, and no id is
  ever given to another row, even across rebuilds and restarts (the counter is saved).
  Updates are ``remove_ids`` + ``add_with_ids``; nothing is rebuilt.
- ``attach(store)`` builds from ``store.list(status="published")`` and then follows every
  committed change through ``store.subscribe``; the embedding is done on the writing thread,
  outside the index lock. Changes announced while a build is running are queued and replayed
  after it, so none is lost. The index knows the store ``revision()`` it reflects; a gap in the
  announced revisions (another process wrote the file) makes it "unknown", so a saved copy is not
  trusted later.
- One ``threading.RLock`` guards every mutation; a search holds it for the FAISS call and the id
  lookups, so it always sees one consistent state. Embedding a query happens outside the lock.
- ``save(dir)`` writes ``index.faiss`` and ``ids.json`` (each to a temporary file, then
  ``os.replace``). ``load_or_rebuild(dir, store, embedder)`` uses them only when the embedder
  name and dimension, the store revision, the set of published ids and a digest of their text
  all match; otherwise it rebuilds (with a progress bar) and saves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from knowledge.embed import Embedder, Matrix
from knowledge.snippets import Snippet
from knowledge.store import SnippetChange, SnippetStore

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
FORMAT_VERSION = 1
BATCH_SIZE = 64
OVERFETCH = 4

Sync = Literal["new", "built", "loaded", "rebuilt"]


@dataclass(frozen=True, slots=True)
class SearchHit:
    snippet_id: str
    score: float
    title: str


@dataclass(frozen=True, slots=True)
class _Row:
    int_id: int
    title: str
    lang: str
    text_sha: str  # sha1 of the embedded text ("" when the vector came from outside)


def snippet_text(s: Snippet) -> str:
    """What is embedded for a snippet: title, tags, body."""
    tags = ", ".join(s.tags)
    return f"{s.title}\n{tags}\n{s.body}" if tags else f"{s.title}\n{s.body}"


def _text_sha(s: Snippet) -> str:
    return hashlib.sha1(snippet_text(s).encode("utf-8")).hexdigest()


def _digest(pairs: Iterable[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for snippet_id, sha in sorted(pairs):
        h.update(f"{snippet_id}\0{sha}\n".encode())
    return h.hexdigest()


def _lang_matches(lang: str, wanted: str) -> bool:
    """ "zh" matches "zh" and "zh-TW"; "zh-TW" only "zh-TW" (case-insensitive)."""
    lang, wanted = lang.lower(), wanted.lower()
    return lang == wanted or lang.startswith(wanted + "-")


def _new_faiss(dim: int) -> Any:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class SnippetIndex:
    """Published snippets in a FAISS flat inner-product index. See the module contract."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.dim = int(embedder.dim)
        self._lock = threading.RLock()
        self._rebuild_lock = threading.Lock()  # one build at a time
        self._index: Any = _new_faiss(self.dim)
        self._rows: dict[str, _Row] = {}
        self._by_int: dict[int, str] = {}
        self._next_id = 1
        self._revision: int | None = None
        self._syncing = False
        self._pending: list[tuple[SnippetChange, Matrix | None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self.last_sync: Sync = "new"
        self.rebuilds = 0  # full builds done by this object (attach, rebuild, load_or_rebuild)

    # -- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return int(self._index.ntotal)

    def __contains__(self, snippet_id: object) -> bool:
        with self._lock:
            return snippet_id in self._rows

    def ids(self) -> set[str]:
        with self._lock:
            return set(self._rows)

    @property
    def revision(self) -> int | None:
        """The store revision this index reflects; None when unknown."""
        with self._lock:
            return self._revision

    def search(self, text: str, k: int = 5, lang: str | None = None) -> list[SearchHit]:
        """The ``k`` best published snippets for a query text, best first; ``lang`` keeps only
        snippets in that language ("zh" also takes "zh-TW")."""
        if k <= 0 or not text.strip():
            return []
        vec = self.embedder.embed([text], query=True)
        return self.search_vector(vec[0], k, lang)

    def search_vector(
        self, vec: NDArray[np.floating[Any]], k: int = 5, lang: str | None = None
    ) -> list[SearchHit]:
        """Like ``search`` for an already embedded query (``dim`` floats, used as given)."""
        if k <= 0:
            return []
        q = np.ascontiguousarray(np.asarray(vec, dtype=np.float32).reshape(1, -1))
        if q.shape[1] != self.dim:
            raise ValueError(f"query vector has {q.shape[1]} dimensions, the index {self.dim}")
        with self._lock:
            total = int(self._index.ntotal)
            if total == 0:
                return []
            fetch = min(k if lang is None else k * OVERFETCH, total)
            while True:
                scores, labels = self._index.search(q, fetch)
                hits: list[SearchHit] = []
                for score, label in zip(scores[0], labels[0], strict=True):
                    snippet_id = self._by_int.get(int(label))
                    if snippet_id is None:  # -1: fewer rows than asked for
                        continue
                    row = self._rows[snippet_id]
                    if lang is not None and not _lang_matches(row.lang, lang):
                        continue
                    hits.append(SearchHit(snippet_id, float(score), row.title))
                    if len(hits) == k:
                        return hits
                if fetch >= total:
                    return hits
                fetch = min(fetch * OVERFETCH, total)

    # -- changing ------------------------------------------------------------------------------

    def upsert(self, snippets: Sequence[Snippet]) -> None:
        """Index these snippets (published ones; a draft is removed), replacing older rows."""
        published = [s for s in snippets if s.status == "published"]
        vecs = self._embed_passages(published, progress=False) if published else None
        with self._lock:
            self._remove_locked([s.id for s in snippets if s.status != "published"])
            if vecs is not None:
                self._add_locked(
                    [s.id for s in published],
                    vecs,
                    [s.title for s in published],
                    [s.lang for s in published],
                    [_text_sha(s) for s in published],
                )

    def add_vectors(
        self,
        snippet_ids: Sequence[str],
        vectors: NDArray[np.floating[Any]],
        titles: Sequence[str] | None = None,
        langs: Sequence[str] | None = None,
    ) -> None:
        """Index already embedded rows (normalised by the caller), replacing any with these ids.
        For benchmarks and callers that embed themselves; a saved index with such rows is
        rebuilt by ``load_or_rebuild`` (their text is unknown)."""
        n = len(snippet_ids)
        vecs = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if vecs.shape != (n, self.dim):
            raise ValueError(f"expected a ({n}, {self.dim}) matrix, got {vecs.shape}")
        with self._lock:
            self._add_locked(
                snippet_ids,
                vecs,
                titles if titles is not None else [""] * n,
                langs if langs is not None else [""] * n,
                [""] * n,
            )

    def remove(self, snippet_ids: Iterable[str]) -> int:
        """Drop these snippets' rows (unknown ids are ignored); returns how many went."""
        with self._lock:
            return self._remove_locked(snippet_ids)

    def rebuild(
        self, snippets: Sequence[Snippet], progress: bool = True, *, revision: int | None = None
    ) -> None:
        """Replace the whole index by these snippets (drafts skipped), embedding them in batches of
        64 with a progress bar on stderr. Searches go on against the old rows until the swap.
        ``revision``: the store revision the snippets reflect (None: unknown)."""
        with self._rebuild_lock:
            self._begin_sync()
            built = None
            try:
                built = self._build(snippets, progress)
            finally:
                self._finish_sync(built, revision, "rebuilt" if built is not None else None)

    # -- following a store ---------------------------------------------------------------------

    def attach(self, store: SnippetStore, progress: bool = False) -> None:
        """Build from the store's published snippets and follow its committed changes."""
        if self._unsubscribe is not None:
            raise RuntimeError("this index already follows a store")
        with self._rebuild_lock:
            self._begin_sync()
            built = None
            revision: int | None = None
            try:
                self._unsubscribe = store.subscribe(self._on_change)
                revision = store.revision()  # read before the list: later changes are replayed
                built = self._build(store.list(status="published"), progress)
            except BaseException:
                self.detach()
                raise
            finally:
                self._finish_sync(built, revision, "built" if built is not None else None)

    def detach(self) -> None:
        """Stop following the store (the rows stay searchable)."""
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    close = detach

    def _on_change(self, change: SnippetChange) -> None:
        s = change.snippet
        vec = None
        if change.kind == "upsert" and s is not None and s.status == "published":
            vec = self._embed_passages([s], progress=False)  # on the writing thread, unlocked
        with self._lock:
            if self._syncing:
                self._pending.append((change, vec))
            else:
                self._apply_locked(change, vec)

    def _apply_locked(self, change: SnippetChange, vec: Matrix | None) -> None:
        known = self._revision
        if change.revision and known is not None:
            if change.revision <= known:
                return  # already reflected (announced during a build that saw it)
            if change.revision > known + 1:
                log.warning(
                    "kb index: store revision jumped from %d to %d (changed by another process?);"
                    " the index may be behind until it is rebuilt",
                    known,
                    change.revision,
                )
                self._revision = None
            else:
                self._revision = change.revision
        s = change.snippet
        if vec is None or s is None:
            self._remove_locked([change.snippet_id])
        else:
            self._add_locked([s.id], vec, [s.title], [s.lang], [_text_sha(s)])

    # -- persistence ---------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """Write ``index.faiss`` and ``ids.json`` into ``directory`` (created if need be)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        with self._lock:
            data = faiss.serialize_index(self._index)
            meta = {
                "format": FORMAT_VERSION,
                "embedder": self.embedder.name,
                "dim": self.dim,
                "revision": self._revision,
                "next_id": self._next_id,
                "ntotal": int(self._index.ntotal),
                "digest": self._digest_locked(),
                "ids": {sid: [r.int_id, r.title, r.lang, r.text_sha] for sid, r in self._rows.items()},
            }
        _write_atomic(out / INDEX_FILE, lambda p: p.write_bytes(data.tobytes()))
        text = json.dumps(meta, ensure_ascii=False)
        _write_atomic(out / IDS_FILE, lambda p: p.write_text(text, encoding="utf-8"))

    @classmethod
    def load_or_rebuild(
        cls,
        directory: str | Path,
        store: SnippetStore,
        embedder: Embedder,
        *,
        progress: bool = True,
        attach: bool = True,
    ) -> SnippetIndex:
        """The index saved in ``directory`` when it matches ``store`` (embedder, revision, published
        ids and text), else one rebuilt from the store and saved. With ``attach`` it then follows
        the store's changes. ``last_sync`` says which happened ("loaded" or "rebuilt")."""
        directory = Path(directory)
        index = cls(embedder)
        with index._rebuild_lock:
            index._begin_sync()
            state: tuple[Any, dict[str, _Row], int] | None = None
            revision: int | None = None
            how: Sync | None = None
            try:
                if attach:
                    index._unsubscribe = store.subscribe(index._on_change)
                revision = store.revision()
                published = store.list(status="published")
                state, why = index._try_load(directory, revision, published)
                if state is not None:
                    how = "loaded"
                    log.info(
                        "kb index: loaded %d snippets from %s (revision %d)",
                        len(published),
                        directory,
                        revision,
                    )
                else:
                    log.info("kb index: rebuilding %d snippets into %s: %s", len(published), directory, why)
                    state = index._build(published, progress)
                    how = "rebuilt"
            except BaseException:
                index.detach()
                raise
            finally:
                index._finish_sync(state, revision, how)
        if how == "rebuilt":
            index.save(directory)
        return index

    def _try_load(
        self, directory: Path, revision: int, published: Sequence[Snippet]
    ) -> tuple[tuple[Any, dict[str, _Row], int] | None, str]:
        """(state, "") when the files match the store, else (None, why not)."""
        ids_path, index_path = directory / IDS_FILE, directory / INDEX_FILE
        if not ids_path.exists() or not index_path.exists():
            return None, "no saved index"
        try:
            meta = json.loads(ids_path.read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT_VERSION:
                return None, f"saved format {meta.get('format')!r}, expected {FORMAT_VERSION}"
            if meta.get("embedder") != self.embedder.name or meta.get("dim") != self.dim:
                return None, (
                    f"saved for embedder {meta.get('embedder')!r} ({meta.get('dim')}-d), "
                    f"now {self.embedder.name!r} ({self.dim}-d)"
                )
            if meta.get("revision") != revision:
                return None, f"saved at store revision {meta.get('revision')}, the store is at {revision}"
            rows = {sid: _Row(int(v[0]), str(v[1]), str(v[2]), str(v[3])) for sid, v in meta["ids"].items()}
            if set(rows) != {s.id for s in published}:
                return None, "the saved snippet ids differ from the store's published ones"
            if meta.get("digest") != _digest((s.id, _text_sha(s)) for s in published):
                return None, "the saved snippet texts differ from the store's"
            index = faiss.read_index(str(index_path))
            saved_ids = faiss.vector_to_array(index.id_map) if hasattr(index, "id_map") else None
            if (
                not isinstance(index, faiss.IndexIDMap2)
                or index.d != self.dim
                or saved_ids is None
                or sorted(int(i) for i in saved_ids) != sorted(r.int_id for r in rows.values())
            ):
                return None, f"{INDEX_FILE} does not match {IDS_FILE}"
            next_id = max(int(meta["next_id"]), max((r.int_id for r in rows.values()), default=0) + 1)
        except (OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
            return None, f"cannot read the saved index ({exc})"
        return (index, rows, next_id), ""

    # -- internals -----------------------------------------------------------------------------

    def _embed_passages(self, snippets: Sequence[Snippet], progress: bool) -> Matrix:
        out = np.empty((len(snippets), self.dim), dtype=np.float32)
        with tqdm(
            total=len(snippets),
            desc="kb index: embedding",
            unit="snippet",
            file=sys.stderr,
            disable=not progress,
            leave=False,
        ) as bar:
            for start in range(0, len(snippets), BATCH_SIZE):
                batch = snippets[start : start + BATCH_SIZE]
                out[start : start + len(batch)] = self.embedder.embed(
                    [snippet_text(s) for s in batch], query=False
                )
                bar.update(len(batch))
        return out

    def _build(self, snippets: Sequence[Snippet], progress: bool) -> tuple[Any, dict[str, _Row], int]:
        """A new FAISS index and rows for these snippets, built without the lock."""
        latest: dict[str, Snippet] = {}
        for s in snippets:
            if s.status == "published":
                latest[s.id] = s
        published = list(latest.values())
        vecs = self._embed_passages(published, progress)
        with self._lock:  # reserve ids
            first = self._next_id
            self._next_id += len(published)
        index = _new_faiss(self.dim)
        rows: dict[str, _Row] = {}
        if published:
            int_ids = np.arange(first, first + len(published), dtype=np.int64)
            index.add_with_ids(vecs, int_ids)
            for s, i in zip(published, int_ids, strict=True):
                rows[s.id] = _Row(int(i), s.title, s.lang, _text_sha(s))
        return index, rows, first + len(published)

    def _begin_sync(self) -> None:
        with self._lock:
            self._syncing = True
            self._pending = []

    def _finish_sync(
        self, state: tuple[Any, dict[str, _Row], int] | None, revision: int | None, how: Sync | None
    ) -> None:
        """Swap in a built state (unless None) and replay the changes queued meanwhile."""
        with self._lock:
            if state is not None and how is not None:
                index, rows, next_id = state
                self._index, self._rows = index, rows
                self._by_int = {r.int_id: sid for sid, r in rows.items()}
                self._next_id = max(self._next_id, next_id)
                self._revision = revision
                self.last_sync = how
                if how != "loaded":
                    self.rebuilds += 1
            pending, self._pending, self._syncing = self._pending, [], False
            for change, vec in pending:
                self._apply_locked(change, vec)

    def _add_locked(
        self,
        snippet_ids: Sequence[str],
        vecs: Matrix,
        titles: Sequence[str],
        langs: Sequence[str],
        shas: Sequence[str],
    ) -> None:
        if len(set(snippet_ids)) != len(snippet_ids):
            raise ValueError("the same snippet id twice in one add")
        self._remove_locked(snippet_ids)
        n = len(snippet_ids)
        int_ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        self._index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), int_ids)
        for sid, i, title, lang, sha in zip(snippet_ids, int_ids, titles, langs, shas, strict=True):
            self._rows[sid] = _Row(int(i), title, lang, sha)
            self._by_int[int(i)] = sid

    def _remove_locked(self, snippet_ids: Iterable[str]) -> int:
        gone = [self._rows.pop(sid) for sid in snippet_ids if sid in self._rows]
        if gone:
            self._index.remove_ids(np.array([r.int_id for r in gone], dtype=np.int64))
            for r in gone:
                del self._by_int[r.int_id]
        return len(gone)

    def _digest_locked(self) -> str | None:
        if any(not r.text_sha for r in self._rows.values()):
            return None
        return _digest((sid, r.text_sha) for sid, r in self._rows.items())
