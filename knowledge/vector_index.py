"""An inner-product index of vectors under string (snippet) ids, in one FAISS index that changes
kind with its size, searchable while it changes. It knows nothing of stores or embedders: rows come
embedded, with the title a hit shows and the language a search filters on. ``SnippetIndex``
(``knowledge.index``) is one of these that embeds snippets and follows a store.

Contract:

- Rows are added already embedded and L2-normalised, so a score is the cosine. Each row lives under
  an int64 id from a counter that only grows: every add (a new row, or a new version of one) takes
  a fresh id, and no id is ever given to another row. Updates are ``remove_ids`` + ``add_with_ids``;
  nothing is rebuilt for them.
- Two kinds of FAISS index, picked by size (``ivf_threshold``): exact flat below it, IVF from it
  on (``knowledge.faiss_index``). The index is reshaped (retrained, outside the lock) only when the
  flat one reaches the threshold, when the IVF holds more than 4x the rows it was trained on, or when
  it falls below half the threshold (back to exact); each is logged. Changes made meanwhile are
  replayed into the new index before it is swapped in, so none is lost, and searches go on against
  the old one.
- One ``threading.RLock`` guards every mutation; a search holds it for the FAISS call and the id
  lookups, so it always sees one consistent state. Training an IVF happens outside the lock (only
  the copy of the rows and the final swap hold it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from knowledge.embed import Matrix
from knowledge.faiss_index import (
    IVF_THRESHOLD,
    Change,
    Kind,
    default_nprobe,
    index_kind,
    index_rows,
    make_index,
    new_flat,
    replay,
    reshape_reason,
    reshape_target,
)

log = logging.getLogger("knowledge.index")  # the same channel as SnippetIndex, as before the split

OVERFETCH = 4

_make_index = make_index  # reshapes build through this name (a test replaces it to slow one down)
_NO_ROWS: NDArray[np.float32] = np.empty((0, 0), dtype=np.float32)


@dataclass(frozen=True, slots=True)
class SearchHit:
    snippet_id: str
    score: float
    title: str


@dataclass(frozen=True, slots=True)
class Row:
    """One row of the index: its id in FAISS, and what a search or a saved index needs of it."""

    int_id: int
    title: str
    lang: str
    text_sha: str  # sha1 of the embedded text ("" when the vector came from outside)


def _lang_matches(lang: str, wanted: str) -> bool:
    """ "zh" matches "zh" and "zh-TW"; "zh-TW" only "zh-TW" (case-insensitive)."""
    lang, wanted = lang.lower(), wanted.lower()
    return lang == wanted or lang.startswith(wanted + "-")


class VectorIndex:
    """Rows in a FAISS inner-product index, exact (flat) below ``ivf_threshold`` rows and IVF from
    it on (``None``: always flat). ``nprobe``: IVF lists scanned per search (default ``nlist / 5``).
    See the module contract."""

    def __init__(
        self, dim: int, *, ivf_threshold: int | None = IVF_THRESHOLD, nprobe: int | None = None
    ) -> None:
        if ivf_threshold is not None and ivf_threshold < 1:
            raise ValueError(f"ivf_threshold must be positive or None, not {ivf_threshold}")
        if nprobe is not None and nprobe < 1:
            raise ValueError(f"nprobe must be positive or None, not {nprobe}")
        self.dim = dim
        self.ivf_threshold = ivf_threshold
        self._nprobe = nprobe
        self._lock = threading.RLock()
        self._index: Any = new_flat(self.dim)
        self._trained_n = 0  # rows the IVF was trained on (0: flat)
        self._generation = 0  # bumped at every swap of self._index
        self._reshape_log: list[Change] | None = None  # changes made while reshaping
        self._reshape_due = False  # set under the lock by a change that calls for a reshape
        self._rows: dict[str, Row] = {}
        self._by_int: dict[int, str] = {}
        self._next_id = 1
        self._syncing = False  # a build is running (it swaps in its own index): no reshape meanwhile
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
            return index_kind(self._index)

    @property
    def nlist(self) -> int:
        """IVF lists (0 for a flat index)."""
        with self._lock:
            return int(self._index.nlist) if index_kind(self._index) == "ivf" else 0

    @property
    def nprobe(self) -> int:
        """IVF lists scanned per search (0 for a flat index). Settable: ``None`` for the default."""
        with self._lock:
            return int(self._index.nprobe) if index_kind(self._index) == "ivf" else 0

    @nprobe.setter
    def nprobe(self, value: int | None) -> None:
        if value is not None and value < 1:
            raise ValueError(f"nprobe must be positive or None, not {value}")
        with self._lock:
            self._nprobe = value
            if index_kind(self._index) == "ivf":
                self._index.nprobe = value or default_nprobe(int(self._index.nlist))

    @property
    def trained_at(self) -> int:
        """Rows the IVF was trained on (0 for a flat index)."""
        with self._lock:
            return self._trained_n

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

    # -- internals -----------------------------------------------------------------------------

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
            self._rows[sid] = Row(int(i), title, lang, sha)
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
        if index_kind(index) != "ivf" or len(vecs) == 0:
            return None
        x = np.ascontiguousarray(vecs, dtype=np.float32)
        return index, np.ascontiguousarray(index.quantizer.assign(x, 1).reshape(-1), dtype=np.int64)

    def _check_shape_locked(self) -> None:
        """Note whether the index should be reshaped, so that ``_maybe_reshape`` need not take the
        lock again after every change (a writer would queue behind the searches a second time)."""
        n, kind = int(self._index.ntotal), index_kind(self._index)
        if reshape_target(n, kind, self._trained_n, self.ivf_threshold) is not None:
            self._reshape_due = True

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
            old_kind, n, trained_n = index_kind(self._index), int(self._index.ntotal), self._trained_n
            kind = reshape_target(n, old_kind, trained_n, self.ivf_threshold)
            if kind is None:
                return
            generation = self._generation
            ids, vecs = index_rows(self._index, self.dim, buffer)
            self._reshape_log = []
        why = reshape_reason(kind, old_kind, n, trained_n, self.ivf_threshold)
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
                    replay(new, changes)
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
