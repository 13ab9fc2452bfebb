"""A FAISS inner-product index of the published snippets, kept in step with a ``SnippetStore``.

Contract:

- Each published snippet is one row: its title, tags and body embedded as an e5 *passage*
  (``embed(..., query=False)``); queries are embedded with ``query=True``. Rows are L2-normalised,
  so a score is the cosine. Drafts are never indexed (a snippet going back to draft leaves).
- Rows live under int64 ids from a counter that only grows: every add (a new snippet, or a new
  version of one) takes a fresh id, and no id is ever given to another row, even across rebuilds
  and restarts (the counter is saved). Updates are ``remove_ids`` + ``add_with_ids``; nothing is
  rebuilt for them.
- Two kinds of FAISS index, picked by size (``ivf_threshold``, default 20,000 rows):
  below it ``IndexIDMap2(IndexFlatIP)``, exact; from it on ``IndexIVFFlat`` (inner product,
  ``nlist`` = the power of two nearest ``4 * sqrt(n)``, at most ``n / 39``; k-means trained on the
  rows it then holds), approximate: a search scans ``nprobe`` lists (default ``nlist / 5``). The IVF
  takes our ids itself (``add_with_ids``; ``IndexIDMap2`` over an IVF returns wrong ids after a
  ``remove_ids``) and keeps a hashtable direct map, so removing a row is O(1), not a scan.
  The index is reshaped (retrained, outside the lock) only when the flat one reaches the threshold,
  when the IVF holds more than 4x the rows it was trained on, or when it falls below half the
  threshold (back to exact); each is logged. Changes made meanwhile are replayed into the new index
  before it is swapped in, so none is lost, and searches go on against the old one.
- ``configure_faiss_threads(n)`` is the one place this code sets FAISS's OpenMP threads; nothing
  calls it implicitly. A single query does not gain from threads on a small box (1 is faster).
- ``attach(store)`` builds from ``store.list(status="published")`` and then follows every
  committed change through ``store.subscribe``; the embedding is done on the writing thread,
  outside the index lock. Changes announced while a build is running are queued and replayed
  after it, so none is lost. The index knows the store ``revision()`` it reflects; a gap in the
  announced revisions (another process wrote the file) makes it "unknown", so a saved copy is not
  trusted later.
- One ``threading.RLock`` guards every mutation; a search holds it for the FAISS call and the id
  lookups, so it always sees one consistent state. Embedding a query happens outside the lock, and
  so does training an IVF (only the copy of the rows and the final swap hold it).
- ``save(dir)`` writes ``index.faiss`` (either kind) and ``ids.json`` (each to a temporary file,
  then ``os.replace``). ``load_or_rebuild(dir, store, embedder)`` uses them only when the embedder
  name and dimension, the store revision, the set of published ids and a digest of their text
  all match; otherwise it rebuilds (with a progress bar) and saves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import threading
import time
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

IVF_THRESHOLD = 20_000  # rows from which the index is an IVF (below: exact flat)
RETRAIN_GROWTH = 4  # an IVF is retrained once it holds more than this many times its training rows
MIN_POINTS_PER_LIST = 39  # FAISS's k-means wants at least 39 training points per centroid
TRAIN_POINTS_PER_LIST = 64  # the training sample: at most this many rows per list
TRAIN_ITERATIONS = 10
NPROBE_FRACTION = 5  # default nprobe = nlist / 5: recall@5 ~0.97 on the bench's clustered data
MIN_NPROBE = 8

Sync = Literal["new", "built", "loaded", "rebuilt"]
Kind = Literal["flat", "ivf"]


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


# a built or loaded index: (FAISS index, rows, next id, rows the IVF was trained on (0: flat))
_State = tuple[Any, dict[str, _Row], int, int]
# a change made while the index is being reshaped: (removed ids, added ids, their vectors)
_Logged = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]
_NO_ROWS: NDArray[np.float32] = np.empty((0, 0), dtype=np.float32)
_HASHTABLE = int(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # an IVF's id -> row map


def configure_faiss_threads(n: int | None = 1) -> int:
    """Set how many OpenMP threads FAISS uses, process-wide (every index, every caller), and return
    the number now in force. ``None`` or 0 leaves it as it is (FAISS's default: one per core).

    The only place this module touches it: call it once at start-up. On a 2-core box one thread is
    better for single queries: flat top-5 over 100k rows p50 7 / p99 10 ms against 14 / 30 ms with
    2; with the IVF, searches while rows are updated p99 ~3.5 ms against ~10 ms, and updates p99
    ~7 ms against ~19 ms (``bench/kb_search.py --threads 0``). More threads help batch searches and
    training only."""
    if n:
        if n < 0:
            raise ValueError(f"FAISS threads must be positive, not {n}")
        faiss.omp_set_num_threads(int(n))
    return int(faiss.omp_get_max_threads())


def ivf_nlist(n: int) -> int:
    """The number of IVF lists for ``n`` rows: the power of two nearest ``4 * sqrt(n)``, and at
    most the largest power of two leaving 39 training rows per list (at least 1)."""
    want = 1 << round(math.log2(max(4 * math.sqrt(max(n, 1)), 1)))
    cap = 1 << int(math.log2(max(n // MIN_POINTS_PER_LIST, 1)))
    return max(1, min(want, cap))


def default_nprobe(nlist: int) -> int:
    """Lists scanned per search when none is set: ``nlist / 5`` (at least 8, at most ``nlist``)."""
    return max(1, min(nlist, max(MIN_NPROBE, nlist // NPROBE_FRACTION)))


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


def _kind(index: Any) -> Kind:
    return "ivf" if isinstance(index, faiss.IndexIVF) else "flat"


def _make_index(
    dim: int, ids: NDArray[np.int64], vecs: Matrix, kind: Kind, nprobe: int | None
) -> tuple[Any, int]:
    """A new index of this kind holding these rows, and the rows it was trained on (0 for flat).
    Trains (seconds at 100k rows): call it without the lock."""
    if kind == "flat" or len(ids) == 0:
        index = _new_faiss(dim)
        if len(ids):
            index.add_with_ids(vecs, ids)
        return index, 0
    n = len(ids)
    nlist = ivf_nlist(n)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.spherical = True  # unit rows, inner product: normalised centroids
    ivf.cp.niter = TRAIN_ITERATIONS
    sample = vecs
    if n > TRAIN_POINTS_PER_LIST * nlist:
        pick = np.random.default_rng(0).choice(n, TRAIN_POINTS_PER_LIST * nlist, replace=False)
        sample = vecs[np.sort(pick)]
    ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
    ivf.set_direct_map_type(_HASHTABLE)  # O(1) remove_ids instead of a scan
    ivf.add_with_ids(vecs, ids)
    ivf.nprobe = nprobe or default_nprobe(nlist)
    return ivf, n


def _index_ids(index: Any) -> NDArray[np.int64]:
    """The ids of every row in a flat (``IndexIDMap2``) or IVF index."""
    if _kind(index) == "flat":
        return np.asarray(faiss.vector_to_array(index.id_map), dtype=np.int64)
    invlists = index.invlists
    parts = [
        faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
        for i in range(index.nlist)
        if invlists.list_size(i)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)


def _index_rows(index: Any, dim: int, buffer: Matrix | None = None) -> tuple[NDArray[np.int64], Matrix]:
    """A copy of every (id, vector) in a flat or IVF-flat index, into ``buffer`` when it is big
    enough (allocating and touching 150 MB takes longer than copying into it)."""
    n = int(index.ntotal)
    if buffer is not None and len(buffer) >= n and buffer.shape[1:] == (dim,):
        out = buffer[:n]
    else:
        out = np.empty((n, dim), dtype=np.float32)
    if n == 0:
        return np.empty(0, dtype=np.int64), out
    if _kind(index) == "flat":
        flat: Any = faiss.downcast_index(index.index)
        out[:] = faiss.rev_swig_ptr(flat.get_xb(), n * dim).reshape(n, dim)
        return _index_ids(index), out
    invlists = index.invlists
    ids = np.empty(n, dtype=np.int64)
    at = 0
    for i in range(index.nlist):
        size = invlists.list_size(i)
        if size:
            ids[at : at + size] = faiss.rev_swig_ptr(invlists.get_ids(i), size)
            codes = faiss.rev_swig_ptr(invlists.get_codes(i), size * index.code_size)
            out[at : at + size] = codes.view(np.float32).reshape(size, dim)
            at += size
    return ids, out


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
    """Published snippets in a FAISS inner-product index, exact (flat) below ``ivf_threshold`` rows
    and IVF from it on (``None``: always flat). ``nprobe``: IVF lists scanned per search (default
    ``nlist / 5``). See the module contract."""

    def __init__(
        self, embedder: Embedder, *, ivf_threshold: int | None = IVF_THRESHOLD, nprobe: int | None = None
    ) -> None:
        if ivf_threshold is not None and ivf_threshold < 1:
            raise ValueError(f"ivf_threshold must be positive or None, not {ivf_threshold}")
        if nprobe is not None and nprobe < 1:
            raise ValueError(f"nprobe must be positive or None, not {nprobe}")
        self.embedder = embedder
        self.dim = int(embedder.dim)
        self.ivf_threshold = ivf_threshold
        self._nprobe = nprobe
        self._lock = threading.RLock()
        self._rebuild_lock = threading.Lock()  # one build at a time
        self._index: Any = _new_faiss(self.dim)
        self._trained_n = 0  # rows the IVF was trained on (0: flat)
        self._generation = 0  # bumped at every swap of self._index
        self._reshape_log: list[_Logged] | None = None  # changes made while reshaping
        self._reshape_due = False  # set under the lock by a change that calls for a reshape
        self._rows: dict[str, _Row] = {}
        self._by_int: dict[int, str] = {}
        self._next_id = 1
        self._revision: int | None = None
        self._syncing = False
        self._pending: list[tuple[SnippetChange, Matrix | None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self.last_sync: Sync = "new"
        self.rebuilds = 0  # full builds done by this object (attach, rebuild, load_or_rebuild)
        self.reshapes = 0  # flat -> IVF, IVF retrained, IVF -> flat (no re-embedding)

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
    def kind(self) -> Kind:
        """ "flat" (exact) or "ivf" (approximate)."""
        with self._lock:
            return _kind(self._index)

    @property
    def nlist(self) -> int:
        """IVF lists (0 for a flat index)."""
        with self._lock:
            return int(self._index.nlist) if _kind(self._index) == "ivf" else 0

    @property
    def nprobe(self) -> int:
        """IVF lists scanned per search (0 for a flat index). Settable: ``None`` for the default."""
        with self._lock:
            return int(self._index.nprobe) if _kind(self._index) == "ivf" else 0

    @nprobe.setter
    def nprobe(self, value: int | None) -> None:
        if value is not None and value < 1:
            raise ValueError(f"nprobe must be positive or None, not {value}")
        with self._lock:
            self._nprobe = value
            if _kind(self._index) == "ivf":
                self._index.nprobe = value or default_nprobe(int(self._index.nlist))

    @property
    def trained_at(self) -> int:
        """Rows the IVF was trained on (0 for a flat index)."""
        with self._lock:
            return self._trained_n

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
                exhausted = False
                for score, label in zip(scores[0], labels[0], strict=True):
                    snippet_id = self._by_int.get(int(label))
                    if snippet_id is None:  # -1: fewer rows than asked for (IVF: in the lists probed)
                        exhausted = True
                        continue
                    row = self._rows[snippet_id]
                    if lang is not None and not _lang_matches(row.lang, lang):
                        continue
                    hits.append(SearchHit(snippet_id, float(score), row.title))
                    if len(hits) == k:
                        return hits
                if fetch >= total or exhausted:
                    return hits
                fetch = min(fetch * OVERFETCH, total)

    # -- changing ------------------------------------------------------------------------------

    def upsert(self, snippets: Sequence[Snippet]) -> None:
        """Index these snippets (published ones; a draft is removed), replacing older rows."""
        published = [s for s in snippets if s.status == "published"]
        vecs = self._embed_passages(published, progress=False) if published else None
        lists = self._assign(vecs) if vecs is not None else None
        with self._lock:
            self._remove_locked([s.id for s in snippets if s.status != "published"])
            if vecs is not None:
                self._add_locked(
                    [s.id for s in published],
                    vecs,
                    [s.title for s in published],
                    [s.lang for s in published],
                    [_text_sha(s) for s in published],
                    lists,
                )
        self._maybe_reshape()

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
        lists = self._assign(vecs)
        with self._lock:
            self._add_locked(
                snippet_ids,
                vecs,
                titles if titles is not None else [""] * n,
                langs if langs is not None else [""] * n,
                [""] * n,
                lists,
            )
        self._maybe_reshape()

    def remove(self, snippet_ids: Iterable[str]) -> int:
        """Drop these snippets' rows (unknown ids are ignored); returns how many went."""
        with self._lock:
            gone = self._remove_locked(snippet_ids)
        self._maybe_reshape()
        return gone

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
                return
            self._apply_locked(change, vec)
        self._maybe_reshape()  # on the writing thread, like the embedding

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
                "kind": _kind(self._index),
                "trained_n": self._trained_n,
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
        ivf_threshold: int | None = IVF_THRESHOLD,
        nprobe: int | None = None,
    ) -> SnippetIndex:
        """The index saved in ``directory`` when it matches ``store`` (embedder, revision, published
        ids and text), else one rebuilt from the store and saved. With ``attach`` it then follows
        the store's changes. ``last_sync`` says which happened ("loaded" or "rebuilt").
        ``ivf_threshold`` and ``nprobe`` as for the constructor: a loaded index of the other kind
        than its size now calls for is reshaped (and the next ``save`` writes that)."""
        directory = Path(directory)
        index = cls(embedder, ivf_threshold=ivf_threshold, nprobe=nprobe)
        with index._rebuild_lock:
            index._begin_sync()
            state: _State | None = None
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
    ) -> tuple[_State | None, str]:
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
            index: Any = faiss.read_index(str(index_path))
            if isinstance(index, faiss.IndexIVFFlat):
                ok = index.metric_type == faiss.METRIC_INNER_PRODUCT and bool(index.is_trained)
                if ok and index.direct_map.type != _HASHTABLE:
                    index.set_direct_map_type(_HASHTABLE)
                trained_n = int(meta.get("trained_n") or index.ntotal)
            else:
                ok = isinstance(index, faiss.IndexIDMap2)
                trained_n = 0
            if (
                not ok
                or index.d != self.dim
                or sorted(int(i) for i in _index_ids(index)) != sorted(r.int_id for r in rows.values())
            ):
                return None, f"{INDEX_FILE} does not match {IDS_FILE}"
            if trained_n:
                index.nprobe = self._nprobe or default_nprobe(int(index.nlist))
            next_id = max(int(meta["next_id"]), max((r.int_id for r in rows.values()), default=0) + 1)
        except (OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
            return None, f"cannot read the saved index ({exc})"
        return (index, rows, next_id, trained_n), ""

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

    def _build(self, snippets: Sequence[Snippet], progress: bool) -> _State:
        """A new FAISS index (flat or IVF by size) and rows for these snippets, built without the
        lock."""
        latest: dict[str, Snippet] = {}
        for s in snippets:
            if s.status == "published":
                latest[s.id] = s
        published = list(latest.values())
        vecs = self._embed_passages(published, progress)
        with self._lock:  # reserve ids
            first = self._next_id
            self._next_id += len(published)
        int_ids = np.arange(first, first + len(published), dtype=np.int64)
        kind = self._kind_for(len(published), "flat", 0) or "flat"
        index, trained_n = _make_index(self.dim, int_ids, vecs, kind, self._nprobe)
        rows: dict[str, _Row] = {}
        for s, i in zip(published, int_ids, strict=True):
            rows[s.id] = _Row(int(i), s.title, s.lang, _text_sha(s))
        return index, rows, first + len(published), trained_n

    def _begin_sync(self) -> None:
        with self._lock:
            self._syncing = True
            self._pending = []

    def _finish_sync(self, state: _State | None, revision: int | None, how: Sync | None) -> None:
        """Swap in a built state (unless None) and replay the changes queued meanwhile."""
        with self._lock:
            if state is not None and how is not None:
                index, rows, next_id, trained_n = state
                self._index, self._rows, self._trained_n = index, rows, trained_n
                self._generation += 1
                self._check_shape_locked()  # a loaded index may be of the other kind
                self._by_int = {r.int_id: sid for sid, r in rows.items()}
                self._next_id = max(self._next_id, next_id)
                self._revision = revision
                self.last_sync = how
                if how != "loaded":
                    self.rebuilds += 1
            pending, self._pending, self._syncing = self._pending, [], False
            for change, vec in pending:
                self._apply_locked(change, vec)
        if state is not None and how is not None:
            self._maybe_reshape()  # a loaded index of the other kind, or replayed changes past a line

    def _add_locked(
        self,
        snippet_ids: Sequence[str],
        vecs: Matrix,
        titles: Sequence[str],
        langs: Sequence[str],
        shas: Sequence[str],
        lists: tuple[Any, NDArray[np.int64]] | None = None,
    ) -> None:
        if len(set(snippet_ids)) != len(snippet_ids):
            raise ValueError("the same snippet id twice in one add")
        self._remove_locked(snippet_ids)
        n = len(snippet_ids)
        int_ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        self._next_id += n
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        if lists is not None and lists[0] is self._index and len(lists[1]) == n:
            labels = lists[1]  # the IVF lists, found before taking the lock
            self._index.add_core(n, faiss.swig_ptr(vecs), faiss.swig_ptr(int_ids), faiss.swig_ptr(labels))
        else:
            self._index.add_with_ids(vecs, int_ids)
        if self._reshape_log is not None:
            self._reshape_log.append((np.empty(0, dtype=np.int64), int_ids, vecs.copy()))
        for sid, i, title, lang, sha in zip(snippet_ids, int_ids, titles, langs, shas, strict=True):
            self._rows[sid] = _Row(int(i), title, lang, sha)
            self._by_int[int(i)] = sid
        self._check_shape_locked()

    def _remove_locked(self, snippet_ids: Iterable[str]) -> int:
        gone = [self._rows.pop(sid) for sid in snippet_ids if sid in self._rows]
        if gone:
            int_ids = np.array([r.int_id for r in gone], dtype=np.int64)
            self._index.remove_ids(int_ids)  # IVF: O(1) a row through its hashtable direct map
            if self._reshape_log is not None:
                self._reshape_log.append((int_ids, np.empty(0, dtype=np.int64), _NO_ROWS))
            for r in gone:
                del self._by_int[r.int_id]
            self._check_shape_locked()
        return len(gone)

    def _assign(self, vecs: Matrix) -> tuple[Any, NDArray[np.int64]] | None:
        """(the IVF, the list of each row) found without the lock, so that a big add holds it for
        the copy only (10k rows at 100k: 8 ms instead of 95); None for a flat index. The quantizer
        is only read, never changed, once trained; ``_add_locked`` uses the lists only if this IVF
        is still the index (not reshaped meanwhile)."""
        index = self._index  # one attribute read: the object stays whole even if swapped out
        if _kind(index) != "ivf" or len(vecs) == 0:
            return None
        x = np.ascontiguousarray(vecs, dtype=np.float32)
        return index, np.ascontiguousarray(index.quantizer.assign(x, 1).reshape(-1), dtype=np.int64)

    def _check_shape_locked(self) -> None:
        """Note whether the index should be reshaped, so that ``_maybe_reshape`` need not take the
        lock again after every change (a writer would queue behind the searches a second time)."""
        if self._kind_for(int(self._index.ntotal), _kind(self._index), self._trained_n) is not None:
            self._reshape_due = True

    def _kind_for(self, n: int, kind: Kind, trained_n: int) -> Kind | None:
        """The kind an index of ``n`` rows should be reshaped to, or None to leave it."""
        threshold = self.ivf_threshold
        if kind == "flat":
            return "ivf" if threshold is not None and n >= threshold else None
        if threshold is None or n < threshold // 2:
            return "flat"
        return "ivf" if n > RETRAIN_GROWTH * trained_n else None

    def _reshape_busy(self) -> bool:
        return self._syncing or self._reshape_log is not None

    def _maybe_reshape(self) -> None:
        """Switch flat <-> IVF or retrain the IVF when the size calls for it (see the contract).
        Called without the lock: the rows are copied under it, the new index is trained without
        it, and the changes made meanwhile are replayed into it under the lock before the swap."""
        if not self._reshape_due or self._reshape_busy():
            return  # read without the lock (checked again under it): nothing due, or not now
        # the copy of the rows goes into memory allocated and touched before taking the lock
        buffer = np.ones((int(self._index.ntotal) + 1024, self.dim), dtype=np.float32)
        with self._lock:
            if self._reshape_busy():
                return  # a build will swap in its own index / another thread is reshaping
            self._reshape_due = False
            old_kind, n, trained_n = _kind(self._index), int(self._index.ntotal), self._trained_n
            kind = self._kind_for(n, old_kind, trained_n)
            if kind is None:
                return
            generation = self._generation
            ids, vecs = _index_rows(self._index, self.dim, buffer)
            self._reshape_log = []
        if kind == "flat":
            why = f"below half the IVF threshold {self.ivf_threshold}: back to the exact flat index"
        elif old_kind == "flat":
            why = f"reached the IVF threshold {self.ivf_threshold}: flat -> IVF (nlist {ivf_nlist(n)})"
        else:
            why = (
                f"more than {RETRAIN_GROWTH}x the {trained_n} rows the IVF was trained on: "
                f"retraining (nlist {ivf_nlist(n)})"
            )
        log.info("kb index: %d rows, %s", n, why)
        started = time.perf_counter()
        new: Any = None
        new_trained = 0
        try:
            new, new_trained = _make_index(self.dim, ids, vecs, kind, self._nprobe)
        except Exception:  # the old index is still whole: keep it, the next change tries again
            log.exception("kb index: could not build the %s index; keeping the %s one", kind, old_kind)
        finally:
            del ids, vecs, buffer
            with self._lock:
                changes, self._reshape_log = self._reshape_log or [], None
                swapped = new is not None and generation == self._generation
                if swapped:
                    for removed, added, added_vecs in changes:
                        if len(removed):
                            new.remove_ids(removed)
                        if len(added):
                            new.add_with_ids(added_vecs, added)
                    if kind == "ivf":  # nprobe may have been set meanwhile
                        new.nprobe = self._nprobe or default_nprobe(int(new.nlist))
                    self._index, self._trained_n = new, new_trained
                    self._generation += 1
                    self.reshapes += 1
        if swapped:
            log.info(
                "kb index: now %s with %d rows%s, in %.1f s (%d changes replayed)",
                kind,
                int(new.ntotal),
                f", nlist {new.nlist}, nprobe {new.nprobe}" if kind == "ivf" else "",
                time.perf_counter() - started,
                len(changes),
            )
        elif new is not None:
            log.info("kb index: reshape dropped, the index was rebuilt meanwhile")

    def _digest_locked(self) -> str | None:
        if any(not r.text_sha for r in self._rows.values()):
            return None
        return _digest((sid, r.text_sha) for sid, r in self._rows.items())
