"""Snippet file format and the SQLite snippet store: import/export, versions, audit, listeners, threads."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from knowledge.snippets import KnowledgeError, Snippet, load_snippets_jsonl, parse_snippet_line
from knowledge.store import SnippetChange, SnippetNotFoundError, SnippetStore
from sidecar.kernel.errors import InputError

pytestmark = pytest.mark.unit

# Three lines of /work/shared/callsets/dev/kb.jsonl, verbatim, in id order.
DEV_LINES = (
    (
        '{"id": "order-cancellation", "title": "Cancelling an order before dispatch", "body":'
        ' "Orders can be cancelled free of charge until their status changes to Dispatched. 1.'
        " Open the order and check the status. 2. If it has not been dispatched, select Cancel"
        " order and read the confirmation number to the customer. 3. Any card authorisation is"
        " released automatically within 3 to 5 business days and the customer is not charged."
        " 4. If the order has already been dispatched, the customer can refuse the delivery or"
        ' start a return, and is refunded once the item is back.", "tags": ["cancellation",'
        ' "orders", "ecommerce"], "lang": "en"}'
    ),
    (
        '{"id": "refund-policy", "title": "Refund policy for returned items", "body": "1.'
        " Confirm the order number and check that the return shows as received at the"
        " warehouse. 2. Refunds go back to the original payment method within 5 to 10 business"
        " days after the item is inspected. 3. If the return was received more than 10"
        " business days ago and no refund shows, raise a refund trace in the order tool and"
        " give the customer the trace reference. 4. Never promise an exact date for the money"
        ' to appear, because the customer\'s bank controls posting times.", "tags": ["refund",'
        ' "returns", "ecommerce"], "lang": "en"}'
    ),
    (
        '{"id": "zh-refund-policy", "title": "退货退'
        '款流程", "body": "1. 核对订单号，确认仓库已签收退回的商品。2. '
        "质检通过后，款项在5到10个工作日内原路退回。3. 若仓库签收超过10个工作日仍"
        "未到账，在系统中发起退款查询，并将查询单号告知客户。4. 不得承诺具体到账日期，"
        '到账时间以银行处理为准。", "tags": ["退款", "退货", "电商"'
        '], "lang": "zh"}'
    ),
)


class Clock:
    """An injectable ``now``: 1000.0, 1001.0, ..."""

    def __init__(self) -> None:
        self.t = 999.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture
def kb_file(tmp_path: Path) -> Path:
    path = tmp_path / "kb.jsonl"
    path.write_text("\n".join(DEV_LINES) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def store() -> SnippetStore:
    return SnippetStore(":memory:", now=Clock())


def snip(snippet_id: str = "greeting", body: str = "Say hello.", **kw: object) -> Snippet:
    fields: dict[str, object] = {"title": "Greeting", "tags": ("general",), "lang": "en"} | kw
    return Snippet(snippet_id, body=body, **fields)  # type: ignore[arg-type]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- the file format --------------------------------------------------------------------------------


def test_parse_line_reads_the_dev_format() -> None:
    s = parse_snippet_line(DEV_LINES[2], 3, "kb.jsonl")
    assert (s.id, s.lang, s.tags, s.triggers, s.version, s.status) == (
        "zh-refund-policy",
        "zh",
        ("退款", "退货", "电商"),
        (),
        1,
        "published",
    )
    assert json.dumps(s.to_json_dict(), ensure_ascii=False) == DEV_LINES[2]


def test_to_json_dict_triggers_and_full() -> None:
    s = snip(triggers=("say hi",), version=3, status="draft", updated_by="ann", updated_at=5.0)
    assert list(s.to_json_dict()) == ["id", "title", "body", "tags", "lang", "triggers"]
    assert "triggers" not in snip().to_json_dict()
    full = s.to_json_dict(full=True)
    assert (full["version"], full["status"], full["updated_by"], full["updated_at"]) == (
        3,
        "draft",
        "ann",
        5.0,
    )
    assert parse_snippet_line(json.dumps(s.to_json_dict()), 1, "x").triggers == ("say hi",)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "a" "title": "t"}', "kb.jsonl:7: not JSON (Expecting ',' delimiter, column 12)"),
        ('["a"]', "kb.jsonl:7: not a JSON object (got list)"),
        ('{"id": "a", "title": "t", "tags": [], "lang": "en"}', 'kb.jsonl:7: missing field "body"'),
        (
            '{"id": "a", "title": "t", "body": "b", "tags": "x", "lang": "en"}',
            'field "tags" must be a list of strings',
        ),
        (
            '{"id": "a", "title": "t", "body": "b", "tags": [1], "lang": "en"}',
            'field "tags" must be a list of strings',
        ),
        (
            '{"id": "a", "title": "t", "body": "b", "tags": [], "lang": "english"}',
            'field "lang" must be a language code',
        ),
        (
            '{"id": "-a", "title": "t", "body": "b", "tags": [], "lang": "en"}',
            'field "id" must be 1-128 letters',
        ),
        (
            '{"id": "a", "title": " ", "body": "b", "tags": [], "lang": "en"}',
            'field "title" must be a non-empty string',
        ),
        (
            '{"id": "a", "title": "t", "body": 3, "tags": [], "lang": "en"}',
            'field "body" must be a string (got int)',
        ),
        ('{"id": "a", "title": "t", "body": "b", "tags": [], "lang": "en", "x": 1}', 'unknown field "x"'),
        (
            '{"id": "a", "id": "b", "title": "t", "body": "b", "tags": [], "lang": "en"}',
            'field "id" given twice',
        ),
        (
            '{"id": "a", "title": "t", "body": "b", "tags": [], "lang": "en", "triggers": [""]}',
            'field "triggers" must be a list of non-empty strings',
        ),
    ],
)
def test_parse_line_errors(line: str, message: str) -> None:
    with pytest.raises(KnowledgeError) as info:
        parse_snippet_line(line, 7, "kb.jsonl")
    assert str(info.value).startswith("kb.jsonl:7: ")
    assert message in str(info.value)
    assert isinstance(info.value, InputError)


@pytest.mark.parametrize("lang", ["en", "zh", "yue", "zh-TW", "zh-Hant", "en-GB"])
def test_parse_line_accepts_language_codes(lang: str) -> None:
    line = json.dumps({"id": "a", "title": "t", "body": "b", "tags": [], "lang": lang})
    assert parse_snippet_line(line, 1, "x").lang == lang


def test_load_reports_every_bad_line(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "bad.jsonl",
        [
            DEV_LINES[0],
            '{"id": "x", "title": "t",, }',
            "",
            '{"id": "y", "title": "t", "tags": [], "lang": "en"}',
            '{"id": "z", "title": "t", "body": "b", "tags": "refund", "lang": "en"}',
            DEV_LINES[1],
            DEV_LINES[0],
        ],
    )
    with pytest.raises(KnowledgeError) as info:
        load_snippets_jsonl(path)
    problems = info.value.problems
    assert len(problems) == 4
    assert problems[0].startswith(f"{path}:2: not JSON (")
    assert problems[1] == f'{path}:4: missing field "body"'
    assert problems[2].startswith(f'{path}:5: field "tags" must be a list of strings')
    assert problems[3] == f'{path}:7: duplicate id "order-cancellation" (first on line 1)'
    assert str(info.value).startswith(f"{path}: 4 bad lines:\n")
    assert all(p in str(info.value) for p in problems)


def test_load_file_errors(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="no such file"):
        load_snippets_jsonl(tmp_path / "missing.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"id": "\xe9"}\n')
    with pytest.raises(KnowledgeError, match="not UTF-8"):
        load_snippets_jsonl(tmp_path / "latin1.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    assert load_snippets_jsonl(tmp_path / "empty.jsonl") == []


# -- import and export ------------------------------------------------------------------------------


def test_import_dev_lines(store: SnippetStore, kb_file: Path) -> None:
    report = store.import_jsonl(kb_file, actor="ann")
    assert (report.created, report.updated, report.unchanged) == (3, 0, 0)
    assert [s.id for s in store.list()] == ["order-cancellation", "refund-policy", "zh-refund-policy"]
    assert [s.id for s in store.list(lang="zh")] == ["zh-refund-policy"]
    zh = store.get("zh-refund-policy")
    assert zh is not None
    assert (zh.version, zh.status, zh.updated_by, zh.tags) == (
        1,
        "published",
        "ann",
        ("退款", "退货", "电商"),
    )
    assert store.revision() == 3
    actions = [(e.action, e.snippet_id) for e in store.audit()]
    assert actions[0] == ("import", None)
    assert sorted(actions[1:]) == [("create", s.id) for s in store.list()]

    again = store.import_jsonl(kb_file, actor="ann")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert store.revision() == 3


def test_import_as_draft_then_publish(store: SnippetStore, kb_file: Path) -> None:
    store.import_jsonl(kb_file, actor="ann", status="draft")
    assert store.list(status="published") == []
    out = io.StringIO()
    assert store.export_jsonl(out) == 0
    published = store.publish("refund-policy", actor="bob")
    assert (published.version, published.status, published.updated_by) == (2, "published", "bob")
    assert store.publish("refund-policy", actor="bob") == published  # already published: no-op
    assert [s.id for s in store.list(status="published")] == ["refund-policy"]
    assert [e.action for e in store.audit(snippet_id="refund-policy")] == ["publish", "create"]


def test_export_round_trip(store: SnippetStore, kb_file: Path, tmp_path: Path) -> None:
    store.import_jsonl(kb_file, actor="ann")
    out = io.StringIO()
    assert store.export_jsonl(out) == 3
    assert out.getvalue() == kb_file.read_text(encoding="utf-8")

    copy = write_lines(tmp_path / "copy.jsonl", out.getvalue().splitlines())
    other = SnippetStore(now=Clock())
    other.import_jsonl(copy, actor="ann")
    assert other.list() == store.list()


def test_bad_import_writes_nothing(store: SnippetStore, kb_file: Path, tmp_path: Path) -> None:
    store.import_jsonl(kb_file, actor="ann")
    before = (store.list(), store.revision(), store.audit())
    changed = json.loads(DEV_LINES[1]) | {"body": "A new refund policy."}
    bad = write_lines(
        tmp_path / "bad.jsonl",
        [
            json.dumps(changed),
            json.dumps({"id": "new-one", "title": "t", "body": "b", "tags": [], "lang": "en"}),
            "{not json",
            json.dumps({"id": "a", "title": "t", "body": "b", "lang": "en"}),
            json.dumps({"id": "b", "title": "t", "body": "b", "tags": ["x", 2], "lang": "en"}),
            json.dumps(changed),
        ],
    )
    with pytest.raises(KnowledgeError) as info:
        store.import_jsonl(bad, actor="ann")
    message = str(info.value)
    for lineno in (3, 4, 5, 6):
        assert f"bad.jsonl:{lineno}: " in message
    assert "bad.jsonl:1:" not in message
    assert 'duplicate id "refund-policy" (first on line 1)' in message
    assert (store.list(), store.revision(), store.audit()) == before
    assert store.get("new-one") is None

    empty = SnippetStore()
    with pytest.raises(KnowledgeError):
        empty.import_jsonl(bad, actor="ann")
    assert (empty.list(), empty.revision(), empty.audit()) == ([], 0, [])


# -- versions, delete, rollback ----------------------------------------------------------------------


def test_upsert_versions_and_unchanged_is_a_noop(store: SnippetStore) -> None:
    v1 = store.upsert(snip(version=9, updated_by="mallory"), actor="ann")
    assert (v1.version, v1.updated_by, v1.updated_at) == (1, "ann", 1000.0)
    assert store.upsert(snip(), actor="bob") == v1
    assert store.revision() == 1
    assert len(store.audit()) == 1
    assert len(store.history("greeting")) == 1

    v2 = store.upsert(snip(body="Say hello and give your name."), actor="bob")
    assert (v2.version, v2.updated_by) == (2, "bob")
    v3 = store.upsert(snip(body="Say hello and give your name.", status="draft"), actor="bob")
    assert (v3.version, v3.status) == (3, "draft")
    assert store.get("greeting") == v3
    assert [a.action for a in store.audit()] == ["update", "update", "create"]


def test_invalid_snippet_and_actor_are_refused(store: SnippetStore) -> None:
    with pytest.raises(KnowledgeError, match='snippet "greeting": field "body" must be a non-empty string'):
        store.upsert(snip(body=""), actor="ann")
    with pytest.raises(KnowledgeError, match="actor"):
        store.upsert(snip(), actor=" ")
    assert store.list() == []
    assert store.revision() == 0


def test_history_and_rollback(store: SnippetStore) -> None:
    for body in ("one", "two", "three"):
        store.upsert(snip(body=body), actor="ann")
    back = store.rollback("greeting", 1, actor="bob")
    assert (back.version, back.body, back.updated_by) == (4, "one", "bob")
    assert store.get("greeting") == back
    history = store.history("greeting")
    assert [(s.version, s.body) for s in history] == [(1, "one"), (2, "two"), (3, "three"), (4, "one")]
    assert history[-1] == back
    assert store.rollback("greeting", 4, actor="bob") == back  # already the current content
    entry = store.audit(limit=1)[0]
    assert (entry.action, entry.snippet_id, entry.version, entry.detail) == (
        "rollback",
        "greeting",
        4,
        "to version 1",
    )
    with pytest.raises(SnippetNotFoundError, match="no version 9"):
        store.rollback("greeting", 9, actor="bob")
    assert store.history("nothing") == []


def test_delete_keeps_history_and_audit(store: SnippetStore) -> None:
    store.upsert(snip(body="one"), actor="ann")
    store.upsert(snip(body="two"), actor="ann")
    store.delete("greeting", actor="bob")
    assert store.get("greeting") is None
    assert store.list() == []
    assert [s.body for s in store.history("greeting")] == ["one", "two"]
    entry = store.audit(limit=1)[0]
    assert (entry.actor, entry.action, entry.snippet_id, entry.version) == ("bob", "delete", "greeting", 2)
    with pytest.raises(SnippetNotFoundError):
        store.delete("greeting", actor="bob")
    with pytest.raises(SnippetNotFoundError):
        store.publish("greeting", actor="bob")

    restored = store.rollback("greeting", 1, actor="bob")  # undelete
    assert (restored.version, restored.body) == (3, "one")
    again = store.upsert(snip(body="four"), actor="ann")
    assert again.version == 4


def test_listeners_see_each_commit(store: SnippetStore, kb_file: Path) -> None:
    seen: list[SnippetChange] = []
    visible: list[bool] = []

    def listener(change: SnippetChange) -> None:
        seen.append(change)
        visible.append((store.get(change.snippet_id) is not None) == (change.kind == "upsert"))

    def broken(change: SnippetChange) -> None:
        raise RuntimeError("listener bug")

    store.subscribe(broken)
    unsubscribe = store.subscribe(listener)
    saved = store.upsert(snip(), actor="ann")
    store.upsert(snip(), actor="ann")  # no-op: no change
    store.delete("greeting", actor="ann")
    store.import_jsonl(kb_file, actor="ann")
    assert seen[0] == SnippetChange("upsert", "greeting", saved, 1)
    assert seen[1] == SnippetChange("delete", "greeting", None, 2)
    assert [c.revision for c in seen] == [1, 2, 3, 4, 5]
    assert {c.snippet_id for c in seen[2:]} == {"order-cancellation", "refund-policy", "zh-refund-policy"}
    assert all(visible)

    unsubscribe()
    store.upsert(snip(body="new"), actor="ann")
    assert len(seen) == 5


# -- threads and files -------------------------------------------------------------------------------


def test_concurrent_use(tmp_path: Path) -> None:
    store = SnippetStore(tmp_path / "kb.sqlite")
    changes: list[SnippetChange] = []
    store.subscribe(changes.append)
    errors: list[BaseException] = []
    saves = [0] * 4
    deadline = time.monotonic() + 0.5

    def worker(n: int) -> None:
        try:
            i = 0
            while time.monotonic() < deadline:
                i += 1
                saved = store.upsert(snip(f"w{n}", body=f"body {i}"), actor=f"worker{n}")
                assert (saved.body, saved.version) == (f"body {i}", i)
                store.upsert(snip("shared", body=f"from {n}"), actor=f"worker{n}")
                current = store.get(f"w{n}")
                assert current is not None
                assert current.version == i
                assert len(store.list()) >= 1
                saves[n] = i
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(saves)
    for n in range(4):
        current = store.get(f"w{n}")
        assert current is not None
        assert (current.version, current.body) == (saves[n], f"body {saves[n]}")
        assert len(store.history(f"w{n}")) == saves[n]
    shared = store.history("shared")
    assert [s.version for s in shared] == list(range(1, len(shared) + 1))
    assert store.revision() == sum(saves) + len(shared) == len(changes)
    assert [c.revision for c in changes] == list(range(1, len(changes) + 1))
    store.close()


def test_persistence_across_reopen(tmp_path: Path, kb_file: Path) -> None:
    path = tmp_path / "kb.sqlite"
    with SnippetStore(path, now=Clock()) as store:
        store.import_jsonl(kb_file, actor="ann")
        store.upsert(snip(), actor="ann")
        store.upsert(snip(body="changed"), actor="bob")
        store.delete("refund-policy", actor="bob")
        snapshot = (store.list(), store.history("greeting"), store.history("refund-policy"), store.audit())
        revision = store.revision()
    assert revision == 6

    with SnippetStore(path) as store:
        assert store.revision() == revision
        assert (
            store.list(),
            store.history("greeting"),
            store.history("refund-policy"),
            store.audit(),
        ) == snapshot
        store.upsert(snip(body="again"), actor="ann")
        assert store.revision() == revision + 1

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()


def test_refuses_newer_schema_and_foreign_files(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite"
    SnippetStore(newer).close()
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(KnowledgeError, match="schema 99 is newer"):
        SnippetStore(newer)

    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(KnowledgeError, match="not a snippet store"):
        SnippetStore(junk)
