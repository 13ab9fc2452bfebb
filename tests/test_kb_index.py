"""The FAISS snippet index: cross-lingual search, following the store, threads, persistence."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from knowledge.embed import Embedder, Matrix, load_embedder
from knowledge.index import IDS_FILE, INDEX_FILE, SearchHit, SnippetIndex
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
