"""Benchmark the snippet index at knowledge-base scale: indexing, search, recall, updates, memory.

    .venv/bin/python bench/kb_search.py --n 100000 --dim 384 --queries 2000 --k 5 \
        [--data clustered|random] [--threads 1] [--nprobe N] [--nprobe-sweep 32,64,128] [--embed 500]

Vectors are synthetic (embedding 100k texts with the real model takes too long for a quick run):

- ``clustered`` (default): ``--centres`` random unit centres (2000), each row a centre plus
  gaussian noise of norm ``--noise`` (1.5), normalised. A row's cosine to its centre is then about
  0.55, to another row of its cluster about 0.3, to any other row 0 +- 0.05: topics, as real
  embeddings have, though with no structure inside a topic. Queries come from the same mixture.
- ``random``: uniform random unit vectors, the worst case for an IVF (no clusters to find).

A flat index costs the same whatever the vectors are; an IVF (``SnippetIndex`` switches to one at
``--ivf-threshold`` rows, 20k by default) does not, so recall@k against exact search (FAISS
brute force over the same rows) is reported next to the latencies. ``--threads`` sets FAISS's
OpenMP threads through ``configure_faiss_threads`` (1 by default, 0: FAISS's own default).
"search while indexing" times searches from a second thread while the batches go in (and the
index switches to an IVF and is retrained). ``--embed N`` also embeds N synthetic sentences
(English and Chinese) with e5 and reports that throughput and the query embedding latency
separately. Prints a small table, then one JSON line; the index's log lines (flat -> IVF,
retraining) go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from knowledge.embed import Matrix
from knowledge.faiss_index import IVF_THRESHOLD
from knowledge.index import SnippetIndex, configure_faiss_threads
from knowledge.index_store import IDS_FILE, INDEX_FILE


class RandomEmbedder:
    """Stands in for a model: random unit vectors (the bench feeds vectors directly)."""

    multilingual = True

    def __init__(self, dim: int, seed: int = 0) -> None:
        self.name = f"random-{dim}"
        self.dim = dim
        self._rng = np.random.default_rng(seed)

    def embed(self, texts: Sequence[str], *, query: bool = True) -> Matrix:
        return unit_vectors(self._rng, len(texts), self.dim)


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> Matrix:
    v = rng.standard_normal((n, dim), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


class Vectors:
    """Synthetic unit rows: uniform ("random") or around fixed centres ("clustered")."""

    def __init__(self, kind: str, dim: int, centres: int, noise: float, rng: np.random.Generator) -> None:
        self.kind, self.dim, self.noise = kind, dim, noise
        self.centres = unit_vectors(rng, centres, dim) if kind == "clustered" else None

    def sample(self, rng: np.random.Generator, n: int) -> Matrix:
        if self.centres is None:
            return unit_vectors(rng, n, self.dim)
        v = self.centres[rng.integers(len(self.centres), size=n)]
        v += rng.standard_normal((n, self.dim), dtype=np.float32) * np.float32(self.noise / np.sqrt(self.dim))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return v


def recall_at(found: Sequence[Sequence[str]], truth: NDArray[np.int64], k: int) -> float:
    """Mean share of the exact top-k (row numbers; row i is snippet "s{i}") among the ids found."""
    total = 0.0
    for ids, rows in zip(found, truth, strict=True):
        total += len({f"s{int(r)}" for r in rows[:k] if r >= 0} & set(ids[:k])) / k
    return total / max(len(found), 1)


def rss_mib() -> float:
    """Resident set size now, from /proc/self/status (ru_maxrss, the peak, where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(samples: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q)) * 1000 if samples else float("nan")


_EN = (
    "How do I {verb} my {thing} after the {event}?",
    "The customer wants to {verb} the {thing} because of the {event}.",
    "Steps to {verb} a {thing} when there was a {event} on the account.",
)
_EN_VERBS = ("cancel", "refund", "replace", "block", "upgrade", "dispute", "track", "reset")
_EN_THINGS = ("order", "debit card", "mobile plan", "parcel", "password", "SIM card", "transfer", "bill")
_EN_EVENTS = ("late delivery", "double charge", "outage", "trip abroad", "price drop", "lost wallet")
_ZH = (
    "客户因为{event}想要{verb}{thing}。",
    "{event}之后如何{verb}{thing}？",
    "处理{event}：为客户{verb}{thing}的步骤。",
)
_ZH_VERBS = ("取消", "退还", "更换", "冻结", "升级", "申诉", "查询", "重置")
_ZH_THINGS = ("订单", "银行卡", "套餐", "包裹", "密码", "电话卡", "转账", "账单")
_ZH_EVENTS = ("配送延误", "重复扣款", "网络故障", "出国旅行", "降价", "钱包丢失")


def synthetic_sentences(n: int, seed: int) -> list[str]:
    """n distinct sentences, alternately English and Chinese (numbered so none repeats)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if i % 2 == 0:
            t = _EN[rng.integers(len(_EN))].format(
                verb=_EN_VERBS[rng.integers(8)],
                thing=_EN_THINGS[rng.integers(8)],
                event=_EN_EVENTS[rng.integers(6)],
            )
            out.append(f"{t} Case {i}.")
        else:
            t = _ZH[rng.integers(len(_ZH))].format(
                verb=_ZH_VERBS[rng.integers(8)],
                thing=_ZH_THINGS[rng.integers(8)],
                event=_ZH_EVENTS[rng.integers(6)],
            )
            out.append(f"{t}案例{i}。")
    return out


def bench_embedding(n: int, seed: int) -> dict[str, Any]:
    from knowledge.embed import load_embedder

    t0 = time.perf_counter()
    emb = load_embedder("embed-e5")
    emb.embed(["warm up"], query=False)
    load_s = time.perf_counter() - t0
    texts = synthetic_sentences(n, seed)
    t0 = time.perf_counter()
    for start in range(0, n, 64):
        emb.embed(texts[start : start + 64], query=False)
    embed_s = time.perf_counter() - t0
    queries = synthetic_sentences(50, seed + 1)
    lat = []
    for q in queries:
        t = time.perf_counter()
        emb.embed([f"query {q}"], query=True)
        lat.append(time.perf_counter() - t)
    return {
        "embedder": emb.name,
        "embed_texts": n,
        "embed_load_s": round(load_s, 2),
        "embed_texts_per_s": round(n / embed_s, 1),
        "embed_query_p50_ms": round(pct(lat, 50), 2),
        "embed_query_p95_ms": round(pct(lat, 95), 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="snippets in the index")
    ap.add_argument("--dim", type=int, default=384, help="vector dimension (e5-small: 384)")
    ap.add_argument("--queries", type=int, default=2000, help="searches to time")
    ap.add_argument("--k", type=int, default=5, help="top-k")
    ap.add_argument("--batch", type=int, default=10_000, help="vectors per add while indexing")
    ap.add_argument("--updates", type=int, default=200, help="updates (remove + add) to time")
    ap.add_argument(
        "--embed", type=int, default=0, metavar="N_REAL", help="also embed N real sentences with e5"
    )
    ap.add_argument(
        "--update-gap-ms",
        type=float,
        default=5.0,
        help="pause between updates (back to back starves searches)",
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="FAISS OpenMP threads (default 1; 0: FAISS's default)"
    )
    ap.add_argument(
        "--data", choices=("clustered", "random"), default="clustered", help="synthetic vectors (see above)"
    )
    ap.add_argument("--centres", type=int, default=2000, help="clusters for --data clustered")
    ap.add_argument("--noise", type=float, default=1.5, help="noise norm around a centre (clustered)")
    ap.add_argument(
        "--ivf-threshold",
        type=int,
        default=IVF_THRESHOLD,
        help=f"rows from which the index is an IVF (default {IVF_THRESHOLD}; 0: always flat)",
    )
    ap.add_argument("--nprobe", type=int, default=None, help="IVF lists per search (default: nlist / 5)")
    ap.add_argument(
        "--nprobe-sweep",
        default="",
        metavar="N,N,...",
        help="also time these nprobe values (recall and latency on the first 500 queries)",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    threads = configure_faiss_threads(args.threads)

    rng = np.random.default_rng(args.seed)
    data = Vectors(args.data, args.dim, args.centres, args.noise, rng)
    result: dict[str, Any] = {
        "n": args.n,
        "dim": args.dim,
        "k": args.k,
        "queries": args.queries,
        "data": args.data,
        "centres": args.centres if args.data == "clustered" else None,
        "noise": args.noise if args.data == "clustered" else None,
        "faiss": faiss.__version__,
        "omp_threads": threads,
        "cpus": os.cpu_count(),
    }

    # -- the rows, the queries and the exact answers -----------------------------------------------
    base = data.sample(rng, args.n)
    queries = data.sample(rng, args.queries)
    t0 = time.perf_counter()
    _, truth = faiss.knn(queries, base, args.k, metric=faiss.METRIC_INNER_PRODUCT)
    result["exact_knn_s"] = round(time.perf_counter() - t0, 2)

    # -- indexing --------------------------------------------------------------------------------
    index = SnippetIndex(
        RandomEmbedder(args.dim, args.seed), ivf_threshold=args.ivf_threshold or None, nprobe=args.nprobe
    )
    langs = ("en", "zh")
    indexing = threading.Event()
    while_indexing: list[float] = []

    def indexing_searcher() -> None:  # how long a search waits while batches go in and IVFs train
        i = 0
        while indexing.is_set():
            t0 = time.perf_counter()
            index.search_vector(queries[i % len(queries)], args.k)
            while_indexing.append(time.perf_counter() - t0)
            i += 1
            time.sleep(0.002)

    rss_before = rss_mib()
    add_s = 0.0
    index.add_vectors(["s0"], base[:1])  # not empty when the searcher starts (re-added below)
    indexing.set()
    watcher = threading.Thread(target=indexing_searcher, daemon=True)
    watcher.start()
    for start in range(0, args.n, args.batch):
        m = min(args.batch, args.n - start)
        ids = [f"s{i}" for i in range(start, start + m)]
        titles = [f"snippet {i}" for i in ids]
        lang_list = [langs[i % 2] for i in range(start, start + m)]
        t0 = time.perf_counter()
        index.add_vectors(ids, base[start : start + m], titles, lang_list)
        add_s += time.perf_counter() - t0
    indexing.clear()
    watcher.join()
    rss_after = rss_mib()
    assert len(index) == args.n
    result |= {
        "index_kind": index.kind,
        "nlist": index.nlist,
        "nprobe": index.nprobe,
        "trained_at": index.trained_at,
        "reshapes": index.reshapes,
        "index_s": round(add_s, 3),
        "searches_while_indexing": len(while_indexing),
        "search_while_indexing_p50_ms": round(pct(while_indexing, 50), 3),
        "search_while_indexing_p99_ms": round(pct(while_indexing, 99), 3),
        "search_while_indexing_max_ms": round(max(while_indexing, default=0.0) * 1000, 3),
        "index_vectors_per_s": round(args.n / add_s),
        "rss_before_mib": round(rss_before, 1),
        "rss_after_mib": round(rss_after, 1),
        "rss_growth_mib": round(rss_after - rss_before, 1),
        "index_bytes": args.n * args.dim * 4,
        "index_mib": round(args.n * args.dim * 4 / 2**20, 1),
    }

    # -- search ----------------------------------------------------------------------------------
    for q in queries[:20]:  # warm up
        index.search_vector(q, args.k)
    lat = []
    found: list[list[str]] = []
    for q in queries:
        t0 = time.perf_counter()
        hits = index.search_vector(q, args.k)
        lat.append(time.perf_counter() - t0)
        found.append([h.snippet_id for h in hits])
        assert len(hits) <= min(args.k, args.n)
    lat_lang = []
    for q in queries[: max(1, args.queries // 4)]:
        t0 = time.perf_counter()
        index.search_vector(q, args.k, lang="zh")
        lat_lang.append(time.perf_counter() - t0)
    result |= {
        f"recall_at_{args.k}": round(recall_at(found, truth, args.k), 4),
        "search_p50_ms": round(pct(lat, 50), 3),
        "search_p95_ms": round(pct(lat, 95), 3),
        "search_p99_ms": round(pct(lat, 99), 3),
        "search_qps": round(len(lat) / sum(lat)),
        "search_lang_p50_ms": round(pct(lat_lang, 50), 3),
        "search_lang_p99_ms": round(pct(lat_lang, 99), 3),
    }
    sweep = []
    if args.nprobe_sweep and index.kind == "ivf":
        subset = queries[:500]
        for nprobe in (int(v) for v in args.nprobe_sweep.split(",") if v.strip()):
            index.nprobe = nprobe
            sweep_lat, sweep_found = [], []
            for q in subset:
                t0 = time.perf_counter()
                hits = index.search_vector(q, args.k)
                sweep_lat.append(time.perf_counter() - t0)
                sweep_found.append([h.snippet_id for h in hits])
            sweep.append(
                {
                    "nprobe": index.nprobe,
                    "recall": round(recall_at(sweep_found, truth[: len(subset)], args.k), 4),
                    "p50_ms": round(pct(sweep_lat, 50), 3),
                    "p99_ms": round(pct(sweep_lat, 99), 3),
                }
            )
        index.nprobe = args.nprobe
        result["nprobe_sweep"] = sweep

    # -- updates while another thread searches ---------------------------------------------------
    stop = threading.Event()
    during: list[float] = []
    errors: list[BaseException] = []

    def searcher() -> None:
        r = np.random.default_rng(args.seed + 7)
        try:
            while not stop.is_set():
                q = data.sample(r, 1)[0]
                t0 = time.perf_counter()
                index.search_vector(q, args.k)
                during.append(time.perf_counter() - t0)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=searcher, daemon=True)
    thread.start()
    upd = []
    for _ in range(args.updates):
        sid = f"s{int(rng.integers(args.n))}"
        vec = data.sample(rng, 1)
        t0 = time.perf_counter()
        index.add_vectors([sid], vec, [f"snippet {sid}"], ["en"])
        upd.append(time.perf_counter() - t0)
        time.sleep(args.update_gap_ms / 1000)
    stop.set()
    thread.join()
    if errors:
        raise errors[0]
    assert len(index) == args.n
    result |= {
        "updates": len(upd),
        "update_p50_ms": round(pct(upd, 50), 3),
        "update_p95_ms": round(pct(upd, 95), 3),
        "update_p99_ms": round(pct(upd, 99), 3),
        "searches_during_updates": len(during),
        "search_during_updates_p50_ms": round(pct(during, 50), 3),
        "search_during_updates_p99_ms": round(pct(during, 99), 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }

    # -- persistence -----------------------------------------------------------------------------
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        index.save(tmp)
        save_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        loaded = faiss.read_index(str(Path(tmp) / INDEX_FILE))
        meta = json.loads((Path(tmp) / IDS_FILE).read_text(encoding="utf-8"))
        load_s = time.perf_counter() - t0
        assert loaded.ntotal == args.n
        assert meta["kind"] == index.kind
        assert isinstance(loaded, faiss.IndexIVFFlat) == (index.kind == "ivf")
        saved_mib = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 2**20
        del loaded
    result |= {"save_s": round(save_s, 3), "load_s": round(load_s, 3), "saved_mib": round(saved_mib, 1)}

    if args.embed:
        result |= bench_embedding(args.embed, args.seed)

    data_desc = (
        f"clustered ({args.centres} centres, noise {args.noise})" if args.data == "clustered" else "random"
    )
    kind_desc = (
        f"IVF, nlist {result['nlist']}, nprobe {result['nprobe']}, trained at {result['trained_at']} rows"
        if index.kind == "ivf"
        else "flat (exact)"
    )
    rows = [
        (
            "snippets x dim",
            f"{args.n} x {args.dim}, {data_desc}  (faiss {result['faiss']}, {threads} omp threads)",
        ),
        ("index", f"{kind_desc}  ({result['reshapes']} reshapes)"),
        (
            "indexing",
            f"{result['index_vectors_per_s']:,} vectors/s  ({result['index_s']} s incl. training, "
            f"batches of {args.batch})",
        ),
        (
            "search while indexing",
            f"p50 {result['search_while_indexing_p50_ms']} ms  p99 {result['search_while_indexing_p99_ms']} ms  "
            f"max {result['search_while_indexing_max_ms']} ms  ({result['searches_while_indexing']} searches)",
        ),
        (
            f"search top-{args.k}",
            f"p50 {result['search_p50_ms']} ms  p95 {result['search_p95_ms']} ms  "
            f"p99 {result['search_p99_ms']} ms  ({result['search_qps']} q/s, one caller)",
        ),
        (
            f"recall@{args.k}",
            f"{result[f'recall_at_{args.k}']}  (against exact search, {args.queries} queries)",
        ),
        ("search lang=zh", f"p50 {result['search_lang_p50_ms']} ms  p99 {result['search_lang_p99_ms']} ms"),
        (
            "update (remove+add)",
            f"p50 {result['update_p50_ms']} ms  p95 {result['update_p95_ms']} ms  p99 {result['update_p99_ms']} ms"
            f"  ({args.updates}, {args.update_gap_ms} ms apart)",
        ),
        (
            "search during updates",
            f"p50 {result['search_during_updates_p50_ms']} ms  p99 {result['search_during_updates_p99_ms']} ms"
            f"  ({result['searches_during_updates']} searches)",
        ),
        (
            "memory",
            f"RSS {result['rss_before_mib']} -> {result['rss_after_mib']} MiB (+{result['rss_growth_mib']}), "
            f"vectors {result['index_mib']} MiB, peak {result['peak_rss_mib']} MiB",
        ),
        ("save / load", f"{result['save_s']} s / {result['load_s']} s  ({result['saved_mib']} MiB on disk)"),
    ]
    for row in sweep:
        rows.append(
            (
                f"  nprobe {row['nprobe']}",
                f"recall@{args.k} {row['recall']}  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  (500 queries)",
            )
        )
    if args.embed:
        rows.append(
            (
                "e5 embedding",
                f"{result['embed_texts_per_s']} texts/s over {args.embed} (batches of 64); "
                f"query p50 {result['embed_query_p50_ms']} ms",
            )
        )
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
