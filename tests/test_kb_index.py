"""The FAISS snippet index: cross-lingual search, following the store, threads, persistence."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from knowledge.embed import Embedder, Matrix, load_embedder
from knowledge.faiss_index import default_nprobe, ivf_nlist
from knowledge.index import SearchHit, SnippetIndex
from knowledge.index_store import IDS_FILE, INDEX_FILE
from knowledge.snippets import Snippet
from knowledge.store import SnippetStore

pytestmark = pytest.mark.model

LOST_CARD = Snippet(
    "lost-card",
    "Lost or stolen bank card",
    "Block the card at once in the card tool, confirm the last four digits with the customer and "
    "order a replacement card, which arrives in 5 to 7 business days.",
    ("cards", "fraud", "banking"),
    "en",
)
PASSWORD = Snippet(
    "password-reset",
    "Resetting an online banking password",
    "Send the reset link to the registered email address. The link expires after 30 minutes.",
    ("account", "login"),
    "en",
)
ROAMING = Snippet(
    "roaming-charges",
    "Roaming charges abroad",
    "Explain the daily roaming pass and check whether the customer's plan includes EU roaming.",
    ("mobile", "billing"),
    "en",
)
DELIVERY = Snippet(
    "late-delivery",
    "Late parcel delivery",
    "If the parcel is more than three days late, refund the shipping fee.",
    ("delivery", "ecommerce"),
    "en",
)
ZH_OUTAGE = Snippet(
    "zh-outage-credit",
    "网络故障补偿",
    "经确认的宽带或网络故障超过24小时，按故障天数减免当月月租，并告知客户减免金额。",
    ("故障", "补偿", "宽带"),
    "zh",
)
ZH_REFUND = Snippet(
    "zh-refund",
    "退货退款流程",
    "核对订单号，确认仓库已签收退回的商品；质检通过后款项在5到10个工作日内原路退回。",
    ("退款", "退货"),
    "zh",
)
ZH_PASSWORD = Snippet(
    "zh-password-reset",
    "网上银行密码重置",
    "向客户预留的邮箱发送重置链接，链接30分钟内有效。",
    ("账户", "登录"),
    "zh",
)
ZH_ROAMING = Snippet(
    "zh-roaming",
    "国际漫游资费说明",
    "向客户说明每日漫游包的价格，并查询客户套餐是否包含境外漫游。",
    ("漫游", "账单"),
    "zh",
)
ALL = (LOST_CARD, PASSWORD, ROAMING, DELIVERY, ZH_OUTAGE, ZH_REFUND, ZH_PASSWORD, ZH_ROAMING)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return load_embedder("embed-e5")


@pytest.fixture
def store() -> Iterator[SnippetStore]:
    with SnippetStore(":memory:") as s:
        for snippet in ALL:
            s.upsert(snippet, "test")
        yield s


@pytest.fixture
def index(embedder: Embedder, store: SnippetStore) -> Iterator[SnippetIndex]:
    idx = SnippetIndex(embedder)
    idx.attach(store)
    yield idx
    idx.detach()


def top(idx: SnippetIndex, query: str, k: int = 5, lang: str | None = None) -> list[str]:
    return [h.snippet_id for h in idx.search(query, k, lang=lang)]


def test_builds_from_the_published_snippets(index: SnippetIndex, store: SnippetStore) -> None:
    assert index.ids() == {s.id for s in ALL}
    assert len(index) == len(ALL)
    assert index.revision == store.revision()
    assert index.last_sync == "built"
    hits = index.search("my card was stolen", k=3)
    assert len(hits) == 3
    assert all(isinstance(h, SearchHit) for h in hits)
    assert hits[0] == SearchHit("lost-card", hits[0].score, LOST_CARD.title)
    assert hits[0].score >= hits[1].score >= hits[2].score


# e5-small prefers snippets in the query's own language (a Chinese query scores every Chinese
# snippet above the English ones), so cross-lingual ranking is checked among the other language's
# snippets: the lost-card snippet against unrelated English ones, and so on.


def test_chinese_query_finds_the_english_snippet(index: SnippetIndex) -> None:
    assert top(index, "我的银行卡丢了，怎么挂失？", lang="en")[0] == "lost-card"
    assert top(index, "我的信用卡被偷了，请帮我冻结", lang="en")[0] == "lost-card"


def test_english_query_finds_the_chinese_snippet(index: SnippetIndex) -> None:
    assert top(index, "I forgot my password and cannot log in", lang="zh")[0] == "zh-password-reset"
    assert top(index, "I returned an item, when do I get my money back?", lang="zh")[0] == "zh-refund"


def test_language_filter(index: SnippetIndex) -> None:
    zh = index.search("refund", k=10, lang="zh")
    assert {h.snippet_id for h in zh} == {s.id for s in ALL if s.lang == "zh"}
    assert len(index.search("refund", k=2, lang="en")) == 2
    assert index.search("refund", k=5, lang="fr") == []
    assert index.search("refund", k=0) == []
    assert len(index.search("refund", k=50)) == len(ALL)


def test_update_is_reflected_without_rebuild(index: SnippetIndex, store: SnippetStore) -> None:
    store.upsert(
        replace(
            PASSWORD,
            title="Voicemail PIN reset",
            body="To reset a forgotten voicemail PIN, dial 121, choose option 4 and set a new four-digit PIN.",
            tags=("voicemail", "mobile"),
        ),
        "test",
    )
    hits = index.search("I forgot my voicemail PIN", k=1)
    assert hits[0].snippet_id == "password-reset"
    assert hits[0].title == "Voicemail PIN reset"
    assert index.rebuilds == 1  # the build in attach only
    assert len(index) == len(ALL)
    assert index.revision == store.revision()


def test_delete_removes_it(index: SnippetIndex, store: SnippetStore) -> None:
    store.delete("lost-card", "test")
    assert "lost-card" not in index
    assert "lost-card" not in top(index, "my card was stolen", k=10)
    assert len(index) == len(ALL) - 1
    store.rollback("lost-card", 1, "test")
    assert top(index, "my card was stolen", k=1) == ["lost-card"]


def test_drafts_are_not_indexed(index: SnippetIndex, store: SnippetStore) -> None:
    draft = Snippet(
        "sim-swap",
        "Replacement SIM card",
        "Order a new SIM and cancel the old one.",
        ("mobile",),
        "en",
        status="draft",
    )
    store.upsert(draft, "test")
    assert "sim-swap" not in index
    store.publish("sim-swap", "test")
    assert "sim-swap" in index
    assert top(index, "I need a new SIM card", k=1) == ["sim-swap"]
    store.upsert(replace(store.get("sim-swap") or draft, status="draft"), "test")
    assert "sim-swap" not in index
    assert index.ids() == {s.id for s in store.list(status="published")}


def test_update_during_concurrent_searches(index: SnippetIndex, store: SnippetStore) -> None:
    known = {s.id for s in ALL}
    errors: list[BaseException] = []
    bad: list[object] = []
    searches = [0, 0, 0]
    stop = threading.Event()
    queries = ("my card was stolen", "我的银行卡丢了", "parcel is late", "voicemail PIN")

    def searcher(n: int) -> None:
        try:
            while not stop.is_set():
                for lang in (None, "en", "zh"):
                    hits = index.search(queries[(searches[n] + n) % len(queries)], k=3, lang=lang)
                    searches[n] += 1
                    ids = [h.snippet_id for h in hits]
                    scores = [h.score for h in hits]
                    if (
                        len(hits) > 3
                        or len(set(ids)) != len(ids)
                        or not set(ids) <= known
                        or not all(math.isfinite(s) for s in scores)
                        or scores != sorted(scores, reverse=True)
                        or (lang is None and len(hits) != 3)
                    ):
                        bad.append(hits)
        except BaseException as exc:
            errors.append(exc)

    def writer() -> None:
        try:
            for i in range(20):
                store.upsert(replace(DELIVERY, body=f"{DELIVERY.body} Revision note {i}."), "writer")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    w = threading.Thread(target=writer)
    w.start()
    w.join(timeout=120)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert not bad
    assert min(searches) > 0
    assert index.ids() == known
    assert len(index) == len(ALL)
    assert index.revision == store.revision()
    assert index.rebuilds == 1
    final = store.get("late-delivery")
    assert final is not None
    assert final.body.endswith("Revision note 19.")
    assert top(index, "my parcel is late", k=1) == ["late-delivery"]


def test_save_then_load_without_rebuild(
    embedder: Embedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, saved = tmp_path / "kb.sqlite", tmp_path / "index"
    caplog.set_level(logging.INFO, logger="knowledge.index")
    with SnippetStore(db) as store:
        for snippet in ALL:
            store.upsert(snippet, "test")
        first = SnippetIndex.load_or_rebuild(saved, store, embedder, progress=False)
        first.detach()
        assert first.last_sync == "rebuilt"
        assert (saved / INDEX_FILE).exists()
        assert (saved / IDS_FILE).exists()
        assert "rebuilding" in caplog.text

    caplog.clear()
    with SnippetStore(db) as store:
        second = SnippetIndex.load_or_rebuild(saved, store, embedder, progress=False)
        try:
            assert second.last_sync == "loaded"
            assert second.rebuilds == 0
            assert "loaded" in caplog.text
            assert second.ids() == {s.id for s in ALL}
            for query in ("我的银行卡丢了，怎么挂失？", "my card was stolen"):
                assert second.search(query, k=8) == first.search(query, k=8)
            # it follows the store after loading, and its ids keep growing past the saved ones
            store.upsert(replace(ROAMING, body="Roaming in the EU is free on every plan."), "test")
            assert top(second, "is roaming in Europe free?", k=1) == ["roaming-charges"]
            assert second.revision == store.revision()
            second.save(saved)
        finally:
            second.detach()
        third = SnippetIndex.load_or_rebuild(saved, store, embedder, progress=False, attach=False)
        assert third.last_sync == "loaded"


def test_store_changed_behind_its_back_is_rebuilt(
    embedder: Embedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, saved = tmp_path / "kb.sqlite", tmp_path / "index"
    caplog.set_level(logging.INFO, logger="knowledge.index")
    with SnippetStore(db) as store:
        for snippet in ALL[:4]:
            store.upsert(snippet, "test")
        idx = SnippetIndex.load_or_rebuild(saved, store, embedder, progress=False)
        idx.detach()
        assert SnippetIndex.load_or_rebuild(
            saved, store, embedder, progress=False, attach=False
        ).last_sync == ("loaded")
        with SnippetStore(db) as other:  # another connection: its changes are not announced
            other.upsert(ZH_OUTAGE, "other")
        caplog.clear()
        again = SnippetIndex.load_or_rebuild(saved, store, embedder, progress=False, attach=False)
        assert again.last_sync == "rebuilt"
        assert "revision" in caplog.text
        assert "zh-outage-credit" in again
        assert again.revision == store.revision()
        assert SnippetIndex.load_or_rebuild(
            saved, store, embedder, progress=False, attach=False
        ).last_sync == ("loaded")


def test_saved_index_for_another_embedder_is_rebuilt(embedder: Embedder, tmp_path: Path) -> None:
    class Renamed:
        name = "some-other-model"
        dim = embedder.dim
        multilingual = True

        def embed(self, texts: Sequence[str], *, query: bool = True) -> Matrix:
            return embedder.embed(texts, query=query)

    with SnippetStore(tmp_path / "kb.sqlite") as store:
        store.upsert(LOST_CARD, "test")
        SnippetIndex.load_or_rebuild(tmp_path, store, embedder, progress=False, attach=False)
        other = SnippetIndex.load_or_rebuild(tmp_path, store, Renamed(), progress=False, attach=False)
        assert other.last_sync == "rebuilt"


def test_search_vector_and_added_vectors(embedder: Embedder) -> None:
    idx = SnippetIndex(embedder)
    assert idx.search("anything") == []
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((10, embedder.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    idx.add_vectors([f"s{i}" for i in range(10)], vecs)
    assert idx.search_vector(vecs[3], k=1)[0].snippet_id == "s3"
    idx.add_vectors(["s3"], vecs[4:5])  # replaced, not added
    assert len(idx) == 10
    assert {h.snippet_id for h in idx.search_vector(vecs[4], k=2)} == {"s3", "s4"}
    assert idx.remove(["s3", "nope"]) == 1
    assert len(idx.search_vector(vecs[0], k=50)) == 9
    with pytest.raises(ValueError, match="dimensions"):
        idx.search_vector(np.zeros(3, dtype=np.float32))


def test_changes_during_the_initial_build_are_not_lost(embedder: Embedder, store: SnippetStore) -> None:
    entered, release = threading.Event(), threading.Event()

    class SlowBuild:
        name = embedder.name
        dim = embedder.dim
        multilingual = True

        def embed(self, texts: Sequence[str], *, query: bool = True) -> Matrix:
            if len(texts) > 1:  # the build's batch, not a single change
                entered.set()
                release.wait(timeout=30)
            return embedder.embed(texts, query=query)

    idx = SnippetIndex(SlowBuild())
    builder = threading.Thread(target=idx.attach, args=(store,))
    builder.start()
    try:
        assert entered.wait(timeout=30)
        store.delete("roaming-charges", "test")
        store.upsert(replace(ZH_ROAMING, id="zh-roaming-2"), "test")
        assert idx.search("refund", k=50) == []  # still the empty index: the build has not swapped in
    finally:
        release.set()
        builder.join(timeout=60)
    try:
        assert idx.ids() == {s.id for s in store.list(status="published")}
        assert "roaming-charges" not in idx
        assert "zh-roaming-2" in idx
        assert idx.revision == store.revision()
        assert idx.rebuilds == 1
    finally:
        idx.detach()


# -- the IVF path (large knowledge bases), forced with a small threshold; no model needed ----------

IVF_DIM = 64


def clustered(n: int, seed: int, centres: int = 40, noise: float = 0.5) -> Matrix:
    """n unit vectors around ``centres`` random unit centres (closer to real embeddings than
    uniform noise, which no IVF handles well)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, IVF_DIM)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    v = c[rng.integers(centres, size=n)] + noise * rng.standard_normal((n, IVF_DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32)


class HashEmbedder:
    """A stand-in model for the IVF tests: a fixed clustered vector per text."""

    name = "hash-64"
    dim = IVF_DIM
    multilingual = True

    def embed(self, texts: Sequence[str], *, query: bool = True) -> Matrix:
        out = np.empty((len(texts), IVF_DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = clustered(1, int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "little"))[
                0
            ]
        return out


def rank1(idx: SnippetIndex, vecs: Matrix, ids: Sequence[str]) -> float:
    """The share of these rows whose own id comes back first for their own vector."""
    found = [idx.search_vector(v, k=1)[0].snippet_id == sid for v, sid in zip(vecs, ids, strict=True)]
    return sum(found) / len(found)


def shape(idx: SnippetIndex) -> tuple[str, int, int]:
    """(kind, rows the IVF was trained on, reshapes so far)."""
    return idx.kind, idx.trained_at, idx.reshapes


def test_ivf_path_add_update_delete_by_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="knowledge.index")
    vecs = clustered(2001, seed=1)
    ids = [f"v{i}" for i in range(len(vecs))]
    langs = ["zh" if i % 4 == 0 else "en" for i in range(len(vecs))]
    idx = SnippetIndex(HashEmbedder(), ivf_threshold=500)

    def add(lo: int, hi: int) -> None:
        idx.add_vectors(ids[lo:hi], vecs[lo:hi], [f"title {i}" for i in range(lo, hi)], langs[lo:hi])

    add(0, 499)
    assert shape(idx) == ("flat", 0, 0)
    assert idx.nprobe == 0
    add(499, 500)  # reaches the threshold: an IVF trained on these 500
    assert shape(idx) == ("ivf", 500, 1)
    assert (idx.nlist, idx.nprobe) == (ivf_nlist(500), default_nprobe(ivf_nlist(500)))
    assert "IVF threshold" in caplog.text
    add(500, 2000)  # 4x the training rows: no retrain yet
    assert shape(idx) == ("ivf", 500, 1)
    caplog.clear()
    add(2000, 2001)  # past 4x: retrained on all 2001, once
    assert shape(idx) == ("ivf", 2001, 2)
    assert idx.nlist == ivf_nlist(2001)
    assert "retraining" in caplog.text
    assert len(idx) == 2001
    assert idx.ids() == set(ids)

    # a known vector finds its own id first (and nearly every other row does too)
    hits = idx.search_vector(vecs[123], k=5)
    assert (hits[0].snippet_id, hits[0].title) == ("v123", "title 123")
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert len(hits) == 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    sample = range(0, 2001, 20)
    assert rank1(idx, vecs[sample], [ids[i] for i in sample]) >= 0.95
    zh = idx.search_vector(vecs[124], k=3, lang="zh")
    assert [h.snippet_id for h in zh][:1] == ["v124"]
    assert all(int(h.snippet_id[1:]) % 4 == 0 for h in zh)

    # update by id: the row moves to a new vector, the count stays, nothing is retrained
    moved = clustered(1, seed=99)
    idx.add_vectors(["v123"], moved, titles=["moved"], langs=["en"])
    assert len(idx) == 2001
    assert shape(idx) == ("ivf", 2001, 2)
    first = idx.search_vector(moved[0], k=1)[0]
    assert (first.snippet_id, first.title) == ("v123", "moved")
    assert "v123" not in {h.snippet_id for h in idx.search_vector(vecs[123], k=3) if h.score > 0.9999}

    # delete by id
    assert idx.remove(["v456", "v457", "nope"]) == 2
    assert len(idx) == 1999
    assert "v456" not in idx
    assert "v456" not in {h.snippet_id for h in idx.search_vector(vecs[456], k=20)}
    assert idx.search_vector(vecs[458], k=1)[0].snippet_id == "v458"
    assert shape(idx) == ("ivf", 2001, 2)

    # shrinking below half the threshold goes back to the exact flat index
    caplog.clear()
    keep = [f"v{i}" for i in range(0, 2001, 10)]
    idx.remove(sorted(idx.ids() - set(keep)))
    assert shape(idx) == ("flat", 0, 3)
    assert len(idx) == len(keep)
    assert "exact flat index" in caplog.text
    assert rank1(idx, vecs[0::10], keep) == 1.0


def test_changes_during_a_reshape_are_replayed(monkeypatch: pytest.MonkeyPatch) -> None:
    import knowledge.vector_index as kb_index

    vecs = clustered(700, seed=2)
    ids = [f"v{i}" for i in range(700)]
    idx = SnippetIndex(HashEmbedder(), ivf_threshold=600)
    idx.add_vectors(ids[:599], vecs[:599])
    training, release = threading.Event(), threading.Event()
    real = kb_index._make_index

    def slow_make(*args: object, **kwargs: object) -> object:
        training.set()
        assert release.wait(timeout=30)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(kb_index, "_make_index", slow_make)
    grower = threading.Thread(target=idx.add_vectors, args=(ids[599:600], vecs[599:600]))
    grower.start()
    try:
        assert training.wait(timeout=30)
        # while it trains (outside the lock): searches and changes go on against the flat index
        assert idx.kind == "flat"
        assert idx.search_vector(vecs[5], k=1)[0].snippet_id == "v5"
        idx.add_vectors(ids[600:], vecs[600:])
        idx.add_vectors(["v7"], vecs[8:9])
        assert idx.remove(["v9"]) == 1
    finally:
        release.set()
        grower.join(timeout=60)
    assert shape(idx) == ("ivf", 600, 1)
    assert len(idx) == 699
    assert "v9" not in idx
    assert idx.search_vector(vecs[650], k=1)[0].snippet_id == "v650"
    assert {h.snippet_id for h in idx.search_vector(vecs[8], k=2)} == {"v7", "v8"}


def test_ivf_index_saves_and_loads(tmp_path: Path) -> None:
    snippets = [
        Snippet(f"kb-{i}", f"Snippet {i}", f"Body of snippet number {i}.", ("t",), "en" if i % 3 else "zh")
        for i in range(700)
    ]
    emb = HashEmbedder()
    with SnippetStore(tmp_path / "kb.sqlite") as store:
        for s in snippets:
            store.upsert(s, "test")
        first = SnippetIndex.load_or_rebuild(
            tmp_path / "index", store, emb, progress=False, ivf_threshold=500
        )
        try:
            assert first.last_sync == "rebuilt"
            assert first.kind == "ivf"
            assert first.trained_at == 700
            store.upsert(replace(snippets[1], body="A brand new body."), "test")  # followed, no rebuild
            assert len(first) == 700
            assert first.rebuilds == 1
            first.save(tmp_path / "index")
        finally:
            first.detach()
        second = SnippetIndex.load_or_rebuild(
            tmp_path / "index", store, emb, progress=False, attach=False, ivf_threshold=500
        )
        assert second.last_sync == "loaded"
        assert second.kind == "ivf"
        assert second.rebuilds == 0
        assert second.trained_at == 700
        assert second.nprobe == first.nprobe
        for q in ("Snippet 5\nt\nBody of snippet number 5.", "anything"):
            assert second.search(q, k=5) == first.search(q, k=5)
            assert second.search(q, k=3, lang="zh") == first.search(q, k=3, lang="zh")
        top = second.search("Snippet 42\nt\nBody of snippet number 42.", k=1)[0]
        assert top.snippet_id == "kb-42"
        assert top.score == pytest.approx(1.0, abs=1e-4)
        # ids keep growing past the saved ones: an update after loading is a fresh row
        second.upsert([replace(snippets[2], body="Another body.")])
        assert len(second) == 700
        # the same files, read with a higher threshold: loaded, then back to the exact flat index
        flat = SnippetIndex.load_or_rebuild(
            tmp_path / "index", store, emb, progress=False, attach=False, ivf_threshold=5000
        )
        assert flat.last_sync == "loaded"
        assert flat.kind == "flat"
        assert len(flat) == 700


def test_a_change_another_process_commits_is_caught_up_without_rebuild(
    embedder: Embedder, tmp_path: Path
) -> None:
    """Two nodes on one store file (a shared volume): the index of one follows its own writes as
    they commit; the other node's writes only move the store's revision, and ``catch_up`` takes
    them in, embedding only what changed."""
    db = tmp_path / "kb.sqlite3"
    with SnippetStore(db) as here, SnippetStore(db) as there:  # two connections, as two processes
        for snippet in ALL:
            here.upsert(snippet, "test")
        idx = SnippetIndex(embedder)
        idx.attach(here)
        try:
            assert idx.catch_up(here) == 0  # current
            there.upsert(replace(PASSWORD, title="Voicemail PIN reset",
                                 body="To reset a forgotten voicemail PIN, dial 121 and choose option 4."),
                         "other-node")  # fmt: skip
            there.delete("lost-card", "other-node")
            there.upsert(Snippet("sim-swap", "SIM swap fraud", "Freeze the line and verify the customer's "
                                 "identity before any SIM change.", ("fraud",), "en"), "other-node")  # fmt: skip
            assert idx.revision != here.revision()  # nothing announced here
            assert "lost-card" in idx
            assert idx.catch_up(here) == 3
            assert idx.revision == here.revision()
            assert "lost-card" not in idx
            assert top(idx, "someone swapped my SIM card", k=1) == ["sim-swap"]
            hits = idx.search("I forgot my voicemail PIN", k=1)
            assert (hits[0].snippet_id, hits[0].title) == ("password-reset", "Voicemail PIN reset")
            assert idx.rebuilds == 1  # the build in attach only
            assert idx.catch_up(here) == 0
        finally:
            idx.detach()
