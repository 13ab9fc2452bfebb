"""The FAISS side of the snippet index: which kind of index for how many rows, building one, reading
its rows back, and FAISS's thread count. Functions only: the index that holds one is
``knowledge.vector_index``.

- Two kinds, picked by size (``IVF_THRESHOLD``, default 20,000 rows): below it
  ``IndexIDMap2(IndexFlatIP)``, exact; from it on ``IndexIVFFlat`` (inner product, ``nlist`` = the
  power of two nearest ``4 * sqrt(n)``, at most ``n / 39``; k-means trained on the rows it then
  holds), approximate: a search scans ``nprobe`` lists (default ``nlist / 5``). The IVF takes the
  caller's ids itself (``add_with_ids``; ``IndexIDMap2`` over an IVF returns wrong ids after a
  ``remove_ids``) and keeps a hashtable direct map, so removing a row is O(1), not a scan.
- An index is reshaped only when the flat one reaches the threshold, when the IVF holds more than
  4x the rows it was trained on, or when it falls below half the threshold (back to exact):
  ``reshape_target`` says which, ``reshape_reason`` says why in words for the log.
- ``configure_faiss_threads(n)`` is the one place this code sets FAISS's OpenMP threads; nothing
  calls it implicitly.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import faiss
import numpy as np
from numpy.typing import NDArray

from knowledge.embed import Matrix

IVF_THRESHOLD = 20_000  # rows from which the index is an IVF (below: exact flat)
RETRAIN_GROWTH = 4  # an IVF is retrained once it holds more than this many times its training rows
MIN_POINTS_PER_LIST = 39  # FAISS's k-means wants at least 39 training points per centroid
TRAIN_POINTS_PER_LIST = 64  # the training sample: at most this many rows per list
TRAIN_ITERATIONS = 10
NPROBE_FRACTION = 5  # default nprobe = nlist / 5: recall@5 ~0.97 on the bench's clustered data
MIN_NPROBE = 8

Kind = Literal["flat", "ivf"]

# a change made while an index is being reshaped: (removed ids, added ids, their vectors)
Change = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]
HASHTABLE = int(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # an IVF's id -> row map


def configure_faiss_threads(n: int | None = 1) -> int:
    """Set how many OpenMP threads FAISS uses, process-wide (every index, every caller), and return
    the number now in force. ``None`` or 0 leaves it as it is (FAISS's default: one per core).

    The only place this code touches it: call it once at start-up. On a 2-core box one thread is
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


def new_flat(dim: int) -> Any:
    """An empty exact index that takes the caller's ids."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def index_kind(index: Any) -> Kind:
    return "ivf" if isinstance(index, faiss.IndexIVF) else "flat"


def reshape_target(n: int, kind: Kind, trained_n: int, threshold: int | None) -> Kind | None:
    """The kind an index of ``n`` rows should be reshaped to, or None to leave it. ``trained_n``:
    rows the IVF was trained on; ``threshold``: the IVF threshold (None: always flat)."""
    if kind == "flat":
        return "ivf" if threshold is not None and n >= threshold else None
    if threshold is None or n < threshold // 2:
        return "flat"
    return "ivf" if n > RETRAIN_GROWTH * trained_n else None


def reshape_reason(kind: Kind, old_kind: Kind, n: int, trained_n: int, threshold: int | None) -> str:
    """Why an index of ``n`` rows goes from ``old_kind`` to ``kind``, for the log."""
    if kind == "flat":
        return f"below half the IVF threshold {threshold}: back to the exact flat index"
    if old_kind == "flat":
        return f"reached the IVF threshold {threshold}: flat -> IVF (nlist {ivf_nlist(n)})"
    return (
        f"more than {RETRAIN_GROWTH}x the {trained_n} rows the IVF was trained on: "
        f"retraining (nlist {ivf_nlist(n)})"
    )


def make_index(
    dim: int, ids: NDArray[np.int64], vecs: Matrix, kind: Kind, nprobe: int | None
) -> tuple[Any, int]:
    """A new index of this kind holding these rows, and the rows it was trained on (0 for flat).
    Trains (seconds at 100k rows): call it without the lock."""
    if kind == "flat" or len(ids) == 0:
        index = new_flat(dim)
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
    ivf.set_direct_map_type(HASHTABLE)  # O(1) remove_ids instead of a scan
    ivf.add_with_ids(vecs, ids)
    ivf.nprobe = nprobe or default_nprobe(nlist)
    return ivf, n


def replay(index: Any, changes: list[Change]) -> None:
    """Apply, in order, the changes made to another index while this one was being built."""
    for removed, added, added_vecs in changes:
        if len(removed):
            index.remove_ids(removed)
        if len(added):
            index.add_with_ids(added_vecs, added)


def index_ids(index: Any) -> NDArray[np.int64]:
    """The ids of every row in a flat (``IndexIDMap2``) or IVF index."""
    if index_kind(index) == "flat":
        return np.asarray(faiss.vector_to_array(index.id_map), dtype=np.int64)
    invlists = index.invlists
    parts = [
        faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
        for i in range(index.nlist)
        if invlists.list_size(i)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)


def index_rows(index: Any, dim: int, buffer: Matrix | None = None) -> tuple[NDArray[np.int64], Matrix]:
    """A copy of every (id, vector) in a flat or IVF-flat index, into ``buffer`` when it is big
    enough (allocating and touching 150 MB takes longer than copying into it)."""
    n = int(index.ntotal)
    if buffer is not None and len(buffer) >= n and buffer.shape[1:] == (dim,):
        out = buffer[:n]
    else:
        out = np.empty((n, dim), dtype=np.float32)
    if n == 0:
        return np.empty(0, dtype=np.int64), out
    if index_kind(index) == "flat":
        flat: Any = faiss.downcast_index(index.index)
        out[:] = faiss.rev_swig_ptr(flat.get_xb(), n * dim).reshape(n, dim)
        return index_ids(index), out
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
