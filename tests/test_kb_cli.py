"""``assist kb`` in-process: import/export, history/rollback, feedback analytics, draft dry runs, search."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from knowledge.cli import TryDrafts, add_kb_parser, default_db, index_dir, run_kb
from knowledge.dryrun import format_report
from knowledge.feedback import FEEDBACK_KINDS, FeedbackLog
from knowledge.policy import Firing
from knowledge.snippets import KnowledgeError, Snippet
from knowledge.store import SnippetNotFoundError, SnippetStore
from sidecar.callfile import TranscriptError
from sidecar.kb_try import try_drafts
from sidecar.kernel.errors import AssistError
from sidecar.kernel.turns import Turn

pytestmark = pytest.mark.unit

SNIPPETS = (
    {
        "id": "order-cancellation",
        "title": "Cancelling an order before dispatch",
        "body": "Orders can be cancelled free of charge until their status changes to Dispatched.",
        "tags": ["cancellation", "orders"],
        "lang": "en",
    },
    {
        "id": "refund-policy",
        "title": "Refund policy for returned items",
        "body": "Refunds go back to the original payment method within 5 to 10 business days.",
        "tags": ["refund", "returns"],
        "lang": "en",
        "triggers": ["money back"],
    },
    {
        "id": "zh-refund-policy",
        "title": "退货退款流程",
        "body": "质检通过后，款项在5到10个工作日内原路退回。",
        "tags": ["退款"],
        "lang": "zh",
        "triggers": ["退款"],
    },
)


def jsonl(objs: Sequence[object]) -> str:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs)


def assist(*argv: str | Path, try_drafts: TryDrafts | None = None) -> int:
    """``assist kb ...`` as the main CLI runs it: an AssistError is one stderr line and its exit code."""
    parser = argparse.ArgumentParser(prog="assist")
    add_kb_parser(parser.add_subparsers(dest="command", required=True))
    try:
        return run_kb(parser.parse_args(["kb", *map(str, argv)]), try_drafts=try_drafts)
    except AssistError as exc:
        print(f"assist: error: {exc}", file=sys.stderr)
        return exc.exit_code


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "kb.sqlite3"


@pytest.fixture
def kb_file(tmp_path: Path) -> Path:
    path = tmp_path / "kb.jsonl"
    path.write_text(jsonl(SNIPPETS), encoding="utf-8")
    return path


# -- import / export ---------------------------------------------------------------------------


def test_import_then_export_round_trip(db: Path, kb_file: Path, tmp_path: Path, capsys) -> None:
    assert assist("import", kb_file, "--db", db, "--actor", "ana") == 0
    assert capsys.readouterr().out == "imported 3: 3 created, 0 updated, 0 unchanged\n"
    assert db.is_file()  # parent directory created

    assert assist("export", "--db", db) == 0
    exported = capsys.readouterr().out
    assert [json.loads(line) for line in exported.splitlines()] == list(SNIPPETS)
    assert "退货退款流程" in exported  # UTF-8, not \u escapes

    out = tmp_path / "out" / "copy.jsonl"
    out.parent.mkdir()
    assert assist("export", "--db", db, "-o", out) == 0
    assert capsys.readouterr().out == f"exported 3 snippets to {out}\n"
    assert out.read_text(encoding="utf-8") == exported
    assert [p.name for p in out.parent.iterdir()] == ["copy.jsonl"]  # no temporary file left

    # the exported file imports back as no change at all
    assert assist("import", out, "--db", db, "--actor", "ana") == 0
    assert capsys.readouterr().out == "imported 3: 0 created, 0 updated, 3 unchanged\n"


def test_drafts_are_exported_only_with_all(db: Path, kb_file: Path, tmp_path: Path, capsys) -> None:
    assist("import", kb_file, "--db", db, "--actor", "ana")
    capsys.readouterr()
    draft = tmp_path / "draft.jsonl"
    new = {
        "id": "late-delivery",
        "title": "Late delivery",
        "body": "Check the tracking.",
        "tags": [],
        "lang": "en",
    }
    draft.write_text(jsonl([new]), encoding="utf-8")
    assert assist("import", draft, "--db", db, "--actor", "ana", "--draft") == 0
    assert capsys.readouterr().out == "imported 1: 1 created, 0 updated, 0 unchanged\n"

    assist("export", "--db", db)
    assert "late-delivery" not in capsys.readouterr().out
    assist("export", "--db", db, "--all")
    ids = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert ids == ["late-delivery", "order-cancellation", "refund-policy", "zh-refund-policy"]


def test_import_with_bad_lines_lists_every_line_and_imports_nothing(db: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    lines = [
        json.dumps(SNIPPETS[0]),
        '{"id": "x", "title": "no body", "tags": [], "lang": "en"}',  # 2: missing body
        json.dumps(SNIPPETS[1]),
        "{not json",  # 4
        "",
        json.dumps({**SNIPPETS[2], "lang": "Chinese"}),  # 6: bad language code
        json.dumps(SNIPPETS[0]),  # 7: duplicate id
    ]
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert assist("import", bad, "--db", db, "--actor", "ana") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.splitlines()
    assert [re.match(rf"{re.escape(str(bad))}:(\d+): ", line)[1] for line in err[:-1]] == ["2", "4", "6", "7"]  # type: ignore[index]
    assert err[-1] == f"assist: error: {bad}: 4 bad lines; nothing imported"
    with SnippetStore(db) as store:
        assert store.list() == []
        assert store.audit() == []


def test_one_bad_line_is_one_error_line(db: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(SNIPPETS[0]) + "\n[1, 2]\n", encoding="utf-8")
    assert assist("import", bad, "--db", db, "--actor", "ana") == 2
    assert capsys.readouterr().err == f"assist: error: {bad}:2: not a JSON object (got list)\n"


def test_reading_commands_do_not_create_a_database(db: Path, capsys) -> None:
    for argv in (["export"], ["history", "refund-policy"], ["stats"]):
        assert assist(*argv, "--db", db) == 2
        assert "no knowledge base here yet" in capsys.readouterr().err
    assert not db.exists()
    assert not db.parent.exists()


def test_default_database_comes_from_the_environment(
    tmp_path: Path, kb_file: Path, monkeypatch, capsys
) -> None:
    target = tmp_path / "env" / "deep" / "kb.sqlite3"
    monkeypatch.setenv("ASSIST_KB_DB", str(target))
    monkeypatch.setenv("ASSIST_ACTOR", "env-actor")
    assert default_db() == target
    assert index_dir(target) == tmp_path / "env" / "deep" / "kb.sqlite3.index"
    assert assist("import", kb_file) == 0
    with SnippetStore(target) as store:
        assert {s.updated_by for s in store.list()} == {"env-actor"}
    monkeypatch.delenv("ASSIST_KB_DB")
    assert default_db() == Path.home() / ".local/share/agent-assist/kb.sqlite3"


# -- history / rollback ------------------------------------------------------------------------


def test_history_and_rollback(db: Path, kb_file: Path, tmp_path: Path, capsys) -> None:
    assist("import", kb_file, "--db", db, "--actor", "ana")
    edited = tmp_path / "edited.jsonl"
    edited.write_text(
        jsonl([{**SNIPPETS[1], "title": "Refunds: what to tell the customer"}]), encoding="utf-8"
    )
    assist("import", edited, "--db", db, "--actor", "ben")
    assert capsys.readouterr().out.splitlines()[-1] == "imported 1: 0 created, 1 updated, 0 unchanged"

    assert assist("history", "refund-policy", "--db", db) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "refund-policy: 2 versions (current: version 2)"
    v1, v2 = lines[1].split(), lines[2].split()
    assert v1[:2] == ["v1", "published"]  # then the date and time
    assert v1[4:] == ["ana", "Refund", "policy", "for", "returned", "items"]
    assert v2[:3] == ["*", "v2", "published"]
    assert v2[5:] == ["ben", "Refunds:", "what", "to", "tell", "the", "customer"]

    assert assist("rollback", "refund-policy", "1", "--db", db, "--actor", "cleo") == 0
    assert (
        capsys.readouterr().out == "refund-policy: rolled back to version 1, saved as version 3 (published)\n"
    )
    assert assist("rollback", "refund-policy", "1", "--db", db, "--actor", "cleo") == 0
    assert "nothing changed" in capsys.readouterr().out

    assist("export", "--db", db)
    titles = {
        json.loads(line)["id"]: json.loads(line)["title"] for line in capsys.readouterr().out.splitlines()
    }
    assert titles["refund-policy"] == "Refund policy for returned items"
    with SnippetStore(db) as store:
        assert [(e.actor, e.action) for e in store.audit(snippet_id="refund-policy", limit=1)] == [
            ("cleo", "rollback")
        ]


def test_history_and_rollback_of_unknown_things(db: Path, kb_file: Path, capsys) -> None:
    assist("import", kb_file, "--db", db, "--actor", "ana")
    capsys.readouterr()
    assert assist("history", "no-such-id", "--db", db) == 2
    assert capsys.readouterr().err == 'assist: error: no snippet "no-such-id" (never saved)\n'
    assert assist("rollback", "refund-policy", "7", "--db", db) == 2
    assert capsys.readouterr().err == 'assist: error: snippet "refund-policy" has no version 7\n'
    with pytest.raises(SystemExit):
        assist("rollback", "refund-policy", "0", "--db", db)  # argparse: version must be >= 1


# -- feedback ----------------------------------------------------------------------------------


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_feedback_analytics_counts_and_rates(db: Path, kb_file: Path, capsys) -> None:
    assist("import", kb_file, "--db", db, "--actor", "ana")
    capsys.readouterr()
    clock = Clock()
    with SnippetStore(db) as store:
        log = FeedbackLog(store, now=clock)
        for call in ("c1", "c2", "c3", "c4"):
            log.record(call, "refund-policy", "shown", actor="agent-7")
        log.record("c1", "refund-policy", "used")
        log.record("c1", "refund-policy", "helpful")
        log.record("c2", "refund-policy", "dismissed")
        log.record("c3", "refund-policy", "not_helpful")
        clock.t = 2000.0
        log.record("c5", "order-cancellation", "shown")
        log.record("c5", "order-cancellation", "used")
        log.record("c6", "refund-policy", "shown")

        stats = log.analytics()
        assert [s.snippet_id for s in stats] == ["refund-policy", "order-cancellation", "zh-refund-policy"]
        refund, cancel, never = stats
        counts = (refund.shown, refund.used, refund.dismissed, refund.helpful, refund.not_helpful)
        assert counts == (5, 1, 1, 1, 1)
        assert (refund.use_rate, refund.dismiss_rate, refund.helpful_rate) == (0.2, 0.2, 0.2)
        assert refund.title == "Refund policy for returned items"
        assert (cancel.shown, cancel.used, cancel.use_rate, cancel.dismiss_rate) == (1, 1, 1.0, 0.0)
        assert (never.shown, never.use_rate, never.dismiss_rate, never.helpful_rate) == (0, 0.0, 0.0, 0.0)

        recent = {s.snippet_id: s for s in log.analytics(since=1500.0)}
        assert (recent["refund-policy"].shown, recent["refund-policy"].used) == (1, 0)
        assert recent["order-cancellation"].use_rate == 1.0

        # feedback on a snippet deleted since keeps its last title
        store.delete("order-cancellation", "ana")
        log.record("c7", "order-cancellation", "helpful")
        gone = {s.snippet_id: s for s in log.analytics()}["order-cancellation"]
        assert (gone.title, gone.shown, gone.helpful, gone.helpful_rate) == (
            "Cancelling an order before dispatch", 1, 1, 1.0,
        )  # fmt: skip

    assert assist("stats", "--db", db) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["shown", "used", "dism."]
    assert table[1].split()[:8] == ["5", "1", "1", "1", "1", "20%", "20%", "20%"]
    assert table[1].endswith("refund-policy       Refund policy for returned items")
    assert assist("stats", "--db", db, "--days", "1") == 0  # all of this is from 1970: nothing recent
    assert all(line.split()[0] == "0" for line in capsys.readouterr().out.splitlines()[1:])


def test_feedback_rejects_bad_kinds_and_unknown_snippets(db: Path, kb_file: Path) -> None:
    assist("import", kb_file, "--db", db, "--actor", "ana")
    with SnippetStore(db) as store:
        log = FeedbackLog(store)
        with pytest.raises(
            KnowledgeError, match=r"must be one of shown, used, dismissed, helpful, not_helpful"
        ):
            log.record("c1", "refund-policy", "clicked")
        with pytest.raises(SnippetNotFoundError, match='unknown snippet "nope"'):
            log.record("c1", "nope", "shown")
        with pytest.raises(KnowledgeError, match="call id"):
            log.record("", "refund-policy", "shown")
        assert all(s.shown == 0 for s in log.analytics())
        # the table itself refuses what the API would: a second line of defence
        with pytest.raises(Exception, match="CHECK constraint"):
            store._db.execute(
                "INSERT INTO suggestion_feedback (ts, call_id, snippet_id, kind, actor)"
                " VALUES (0, 'c', 'refund-policy', 'clicked', '')"
            )
    assert FEEDBACK_KINDS == ("shown", "used", "dismissed", "helpful", "not_helpful")


def test_feedback_table_lives_in_the_store_file(db: Path, kb_file: Path) -> None:
    assist("import", kb_file, "--db", db, "--actor", "ana")
    with SnippetStore(db) as store:
        FeedbackLog(store, now=Clock(5.0)).record("c1", "refund-policy", "shown")
    with SnippetStore(db) as store:  # reopened: the table and its rows are still there
        (stats, *_) = FeedbackLog(store).analytics()
        assert (stats.snippet_id, stats.shown) == ("refund-policy", 1)


# -- dry runs ----------------------------------------------------------------------------------


def keyword_overlap_stand_in(turns: list[Turn], snippets: list[Snippet]) -> list[Firing]:
    """A STAND-IN for the real suggestion policy (knowledge.policy): fire a snippet, once per call,
    at the end of the first customer turn that says one of its triggers or two words of its title."""
    fired: list[Firing] = []
    for turn in turns:
        if turn.channel != "customer":
            continue
        said = set(re.findall(r"[a-z]{4,}", turn.text.lower()))
        for s in snippets:
            if any(f.snippet_id == s.id for f in fired):
                continue
            trigger = next((t for t in s.triggers if t.lower() in turn.text.lower()), None)
            shared = sorted(said & set(re.findall(r"[a-z]{4,}", s.title.lower())))
            if trigger is not None:
                fired.append(Firing(turn.end_s, s.id, s.title, 1.0, f'trigger "{trigger}"'))
            elif len(shared) >= 2:
                fired.append(
                    Firing(turn.end_s, s.id, s.title, len(shared) / 4, "words: " + ", ".join(shared))
                )
    return fired


def write_call(path: Path, turns: Sequence[tuple[str, str, float, float]]) -> Path:
    path.write_text(
        jsonl([{"channel": c, "text": t, "start_s": a, "end_s": b} for c, t, a, b in turns]), encoding="utf-8"
    )
    return path


@pytest.fixture
def calls_dir(tmp_path: Path) -> Path:
    calls = tmp_path / "calls"
    calls.mkdir()
    write_call(calls / "a-refund.jsonl", [
        ("agent", "Thanks for calling, how can I help?", 0.0, 2.0),
        ("customer", "I sent the chair back two weeks ago and I want my money back.", 2.5, 6.0),
        ("agent", "Let me check that return for you.", 6.5, 8.0),
        ("customer", "My card is 4111 1111 1111 1111 and the order was cancelled before dispatch.", 61.0, 66.0),
    ])  # fmt: skip
    write_call(calls / "b-zh.jsonl", [
        ("customer", "你好，我想申请退款。", 0.5, 2.0),
        ("agent", "好的，请提供订单号。", 2.2, 3.5),
    ])  # fmt: skip
    (calls / "notes.txt").write_text("not a call", encoding="utf-8")
    return calls


@pytest.fixture
def draft(tmp_path: Path) -> Path:
    path = tmp_path / "draft.jsonl"
    never = {"id": "warranty", "title": "Warranty claims", "body": "Two years.", "tags": [], "lang": "en"}
    path.write_text(jsonl([*SNIPPETS, never]), encoding="utf-8")
    return path


def stand_in_suggester():
    return keyword_overlap_stand_in


def never_built():
    raise AssertionError("the suggester is built only when the draft and the calls are good")


def test_dry_run_reports_firings_totals_and_silent_snippets(draft: Path, calls_dir: Path) -> None:
    report = try_drafts(draft, calls_dir, stand_in_suggester)
    assert [c.path.name for c in report.calls] == ["a-refund.jsonl", "b-zh.jsonl"]
    a, b = report.calls
    assert a.duration_s == 66.0
    assert [(f.t_s, f.snippet_id, f.score, f.reason) for f in a.firings] == [
        (6.0, "refund-policy", 1.0, 'trigger "money back"'),
        (66.0, "order-cancellation", 0.75, "words: before, dispatch, order"),
    ]
    assert (
        a.firings[0].customer_text_excerpt == "I sent the chair back two weeks ago and I want my money back."
    )
    excerpt = a.firings[1].customer_text_excerpt
    assert "4111" not in excerpt  # redacted before it is shown
    assert excerpt.endswith("the order was cancelled before dispatch.")
    assert [(f.snippet_id, f.customer_text_excerpt) for f in b.firings] == [
        ("zh-refund-policy", "你好，我想申请退款。")
    ]

    assert [(t.snippet_id, t.firings, t.calls) for t in report.totals()] == [
        ("order-cancellation", 1, 1), ("refund-policy", 1, 1), ("zh-refund-policy", 1, 1),
    ]  # fmt: skip
    assert [s.id for s in report.never_fired()] == ["warranty"]

    text = format_report(report)
    blocks = text.split("\n\n")
    assert blocks[0].startswith(
        "a-refund.jsonl (66.0 s, 2 suggestions)\n   0:06.0   1.00  refund-policy  Refund"
    )
    assert " 1:06.0   0.75  order-cancellation" in blocks[0]
    assert 'customer: "I sent the chair back' in blocks[0]
    assert blocks[1].startswith("b-zh.jsonl (3.5 s, 1 suggestion)\n")
    assert blocks[2].startswith("totals (4 draft snippets, 2 calls)\n")
    assert "  refund-policy         1 in 1 of 2 calls  Refund policy for returned items" in blocks[2]
    assert blocks[3] == "never fired (1)\n  warranty  Warranty claims\n"


def test_dry_run_errors_name_files_and_lines(draft: Path, calls_dir: Path, tmp_path: Path) -> None:
    bad_draft = tmp_path / "bad-draft.jsonl"
    bad_draft.write_text(json.dumps(SNIPPETS[0]) + "\n{}\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=rf"^{re.escape(str(bad_draft))}:2: missing field"):
        try_drafts(bad_draft, calls_dir, never_built)

    (calls_dir / "c-bad.jsonl").write_text(
        '{"channel": "agent", "text": "hi", "start_s": 0, "end_s": 1}\nnope\n'
    )
    (calls_dir / "d-bad.jsonl").write_text('{"channel": "robot", "text": "", "start_s": 0, "end_s": 1}\n')
    with pytest.raises(TranscriptError) as caught:
        try_drafts(draft, calls_dir, never_built)
    assert [p.split(": ", 1)[0] for p in caught.value.problems] == [
        f"{calls_dir / 'c-bad.jsonl'}:2", f"{calls_dir / 'd-bad.jsonl'}:1",
    ]  # fmt: skip
    assert caught.value.exit_code == 2

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AssistError, match="no transcript files"):
        try_drafts(draft, empty, never_built)


def test_kb_try_runs_the_drafts_it_is_handed(draft: Path, calls_dir: Path, capsys) -> None:
    def tried(d: Path, c: Path):
        return try_drafts(d, c, stand_in_suggester)

    assert assist("try", draft, "--calls", calls_dir, try_drafts=tried) == 0
    out = capsys.readouterr().out
    assert out.startswith("a-refund.jsonl (66.0 s, 2 suggestions)\n")
    assert out.endswith("never fired (1)\n  warranty  Warranty claims\n")


def test_kb_try_without_the_coach_is_a_config_error(draft: Path, calls_dir: Path, capsys) -> None:
    assert assist("try", draft, "--calls", calls_dir) == 4  # knowledge alone cannot run the coach
    assert "run it as `assist kb try`" in capsys.readouterr().err


def test_assist_kb_try_composes_the_coach_and_the_call_files(
    draft: Path, calls_dir: Path, monkeypatch, capsys
) -> None:
    from sidecar.cli import main

    monkeypatch.setattr("sidecar.kb_try.offline_suggester", stand_in_suggester)
    assert main(["kb", "try", str(draft), "--calls", str(calls_dir)]) == 0
    assert capsys.readouterr().out.endswith("never fired (1)\n  warranty  Warranty claims\n")


# -- search (needs the embedder) ---------------------------------------------------------------


@pytest.mark.model
def test_search_finds_the_refund_snippet(db: Path, kb_file: Path, capsys) -> None:
    assist("import", kb_file, "--db", db, "--actor", "ana")
    capsys.readouterr()
    assert (
        assist("search", "the customer wants their money back for a returned item", "--db", db, "-k", "2")
        == 0
    )
    first, *rest = capsys.readouterr().out.splitlines()
    score, snippet_id, title = first.split(maxsplit=2)
    assert (snippet_id, title) == ("refund-policy", "Refund policy for returned items")
    assert float(score) > 1.0  # standard deviations above an ordinary procedure
    assert len(rest) == 1
    assert index_dir(db).is_dir()  # built and saved next to the database

    assert assist("search", "我要退款", "--db", db, "--lang", "zh", "-k", "5") == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == ["zh-refund-policy"]
