"""Published snippets in a ``VectorIndex``, kept in step with a ``SnippetStore``: embedding them,
following the store's changes, saving and loading the index.

Contract:

- Each published snippet is one row: its title, tags and body embedded as an e5 *passage*
  (``embed(..., query=False)``); queries are embedded with ``query=True``. Drafts are never indexed
  (a snippet going back to draft leaves). Rows, their ids, the two kinds of FAISS index and the
  lock are ``knowledge.vector_index``'s contract; the row ids never repeat across rebuilds and
  restarts either (the id counter is saved).
- ``configure_faiss_threads(n)`` (``knowledge.faiss_index``, importable from here) is the one
  place this code sets FAISS's OpenMP threads; nothing calls it implicitly. A single query does
  not gain from threads on a small box (1 is faster).
- ``attach(store)`` builds from ``store.list(status="published")`` and then follows every
  committed change through ``store.subscribe``; the embedding is done on the writing thread,
  outside the index lock. Changes announced while a build is running are queued and replayed
  after it, so none is lost. The index knows the store ``revision()`` it reflects; a gap in the
  announced revisions (another process wrote the file) makes it "unknown", so a saved copy is not
  trusted later. Embedding a query happens outside the lock.
- ``save(dir)`` writes ``index.faiss`` (either kind) and ``ids.json`` (each to a temporary file,
  then ``os.replace``). ``load_or_rebuild(dir, store, embedder)`` uses them only when the embedder
  name and dimension, the store revision, the set of published ids and a digest of their text
  all match (``knowledge.index_store``); otherwise it rebuilds (with a progress bar) and saves.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
from tqdm import tqdm

from knowledge.embed import Embedder, Matrix
from knowledge.faiss_index import IVF_THRESHOLD, make_index, reshape_target
from knowledge.faiss_index import configure_faiss_threads as configure_faiss_threads  # callers import it here
from knowledge.index_store import State, read_saved, saved_meta, write_saved
from knowledge.snippets import Snippet
from knowledge.store import SnippetChange, SnippetStore
from knowledge.vector_index import Row, VectorIndex
from knowledge.vector_index import SearchHit as SearchHit  # callers import it here

log = logging.getLogger(__name__)

BATCH_SIZE = 64

Sync = Literal["new", "built", "loaded", "rebuilt"]


def snippet_text(s: Snippet) -> str:
    """What is embedded for a snippet: title, tags, body."""
    tags = ", ".join(s.tags)
    return f"{s.title}\n{tags}\n{s.body}" if tags else f"{s.title}\n{s.body}"


def _text_sha(s: Snippet) -> str:
    return hashlib.sha1(snippet_text(s).encode("utf-8")).hexdigest()


class SnippetIndex(VectorIndex):
    """Published snippets in a FAISS inner-product index, exact (flat) below ``ivf_threshold`` rows
    and IVF from it on (``None``: always flat). ``nprobe``: IVF lists scanned per search (default
    ``nlist / 5``). See the module contract."""

    def __init__(
        self, embedder: Embedder, *, ivf_threshold: int | None = IVF_THRESHOLD, nprobe: int | None = None
    ) -> None:
        super().__init__(int(embedder.dim), ivf_threshold=ivf_threshold, nprobe=nprobe)
        self.embedder = embedder
        self._rebuild_lock = threading.Lock()  # one build at a time
        self._revision: int | None = None
        self._pending: list[tuple[SnippetChange, Matrix | None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self.last_sync: Sync = "new"
        self.rebuilds = 0  # full builds done by this object (attach, rebuild, load_or_rebuild)

    # -- reading -------------------------------------------------------------------------------

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

    def catch_up(self, store: SnippetStore) -> int:
        """Take in what another process committed to ``store`` (a publish on another node of a
        shared store): a change made here is announced to this index as it commits, one made
        elsewhere only shows as the store's revision moving on. Re-embeds only the snippets whose
        text changed and drops the ones no longer published; returns how many rows changed (0 when
        the index is current)."""
        revision = store.revision()
        if revision == self.revision:
            return 0
        with self._rebuild_lock:  # not while a build swaps its rows in
            published = store.list(status="published")
            with self._lock:
                shas = {sid: row.text_sha for sid, row in self._rows.items()}
            changed = [p for p in published if shas.get(p.id) != _text_sha(p)]
            gone = set(shas) - {p.id for p in published}
            if changed:
                self.upsert(changed)
            if gone:
                with self._lock:
                    self._remove_locked(sorted(gone))
            with self._lock:
                self._revision = max(revision, self._revision or 0)
        if changed or gone:
            log.info(
                "kb index caught up with the store", extra={"changed": len(changed), "removed": len(gone)}
            )
        return len(changed) + len(gone)

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
            meta = saved_meta(
                self._rows,
                embedder=self.embedder.name,
                dim=self.dim,
                revision=self._revision,
                next_id=self._next_id,
                index=self._index,
                trained_n=self._trained_n,
            )
        write_saved(out, data, meta)

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
            state: State | None = None
            revision: int | None = None
            how: Sync | None = None
            try:
                if attach:
                    index._unsubscribe = store.subscribe(index._on_change)
                revision = store.revision()
                published = store.list(status="published")
                state, why = read_saved(
                    directory,
                    embedder=index.embedder.name,
                    dim=index.dim,
                    revision=revision,
                    published=published,
                    text_sha=_text_sha,
                    nprobe=index._nprobe,
                )
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

    def _build(self, snippets: Sequence[Snippet], progress: bool) -> State:
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
        kind = reshape_target(len(published), "flat", 0, self.ivf_threshold) or "flat"
        index, trained_n = make_index(self.dim, int_ids, vecs, kind, self._nprobe)
        rows: dict[str, Row] = {}
        for s, i in zip(published, int_ids, strict=True):
            rows[s.id] = Row(int(i), s.title, s.lang, _text_sha(s))
        return index, rows, first + len(published), trained_n

    def _begin_sync(self) -> None:
        with self._lock:
            self._syncing = True
            self._pending = []

    def _finish_sync(self, state: State | None, revision: int | None, how: Sync | None) -> None:
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
