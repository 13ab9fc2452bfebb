"""The language model in the agent's and supervisor's hands: hand-off notes, reply drafts, post-call.

Pure parts (``unit``): grounding, parsing, the transcript window, the hash-checked join of the
parts. The real model (``llm``: Qwen2.5-Coder-1.5B-Instruct from its 22 packages, on one thread):
a real service (uvicorn on 127.0.0.1, the in-memory bus, the real board) whose calls are events the
test publishes as the pipeline would (transcript finals, the procedure cards shown); a few short
generations only. Without the model: 503 with a clear message, capabilities say so.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from coach.llm.assistant import GenerationStats, PostCallSummary, build_note, build_reply, fingerprint
from coach.llm.grounding import number_values, sources_of, ungrounded
from coach.llm.prompts import (
    Card,
    Turn,
    call_language,
    parse_note,
    reply_grammar,
    summary_grammar,
    summary_prompt,
    window,
)
from coach.llm.service import LlmConfig, default_threads
from models.llm_parts import llm_model_dir
from sidecar.kernel.bus import InMemoryBus
from sidecar.kernel.errors import ModelNotFoundError
from sidecar.kernel.events import CallEnded, CallStarted, Channel, Event, Suggestion, TranscriptFinal
from sidecar.service.auth import Principal, Role, TokenEntry, TokenTable
from sidecar.service.config import ServiceConfig
from tests.service_helpers import FIXTURES, free_port

ZERO = GenerationStats(0, 0, 0, 0.0, 0.0, 0.0)

EN_CALL: list[tuple[Channel, str]] = [
    ("agent", "Thanks for calling Northwind, how can I help?"),
    (
        "customer",
        "I was charged twice for order 4412, 59 dollars each time. I want the extra charge refunded.",
    ),
    ("agent", "I can see two charges of 59 dollars on order 4412."),
    ("agent", "I will refund the duplicate charge within five working days."),
    ("customer", "OK, thanks."),
]
ZH_CALL: list[tuple[Channel, str]] = [
    ("agent", "您好，请问有什么可以帮您？"),
    ("customer", "我这个月的话费多了三十元，我想知道为什么。"),
    ("agent", "好的，我已经核实了您的身份。这个月有一笔三十元的国际漫游费。"),
    ("customer", "我根本没出国，这太不合理了！"),
    ("agent", "我会把这个情况提交给账单部门核查。"),
]
CARDS = [
    Card("kb-dup-refund", "Duplicate charge refund",
         "Apologise, confirm the duplicate amount and tell the customer the refund reaches the card in "
         "3 to 5 working days."),
    Card("kb-cancel-save", "Cancellation threat",
         "Acknowledge the frustration and offer a supervisor callback before the customer cancels."),
]  # fmt: skip
AGENT = ("agent-alice-token", "alice")
SUPERVISOR = ("supervisor-test-token", "sam")
OTHER_AGENT = ("agent-bob-token", "bob")


# --------------------------------------------------------------------------------------- pure parts


@pytest.mark.unit
@pytest.mark.parametrize(
    ("line", "missing"),
    [
        ("Refund of 59 dollars within five working days", []),
        ("Refund within 7 days", ["7"]),
        ("Order 4412 was charged twice", []),
        ("The customer spoke to Maria about order 4412", ["Maria"]),
        ("承诺：五个工作日内退款", []),
        ("承诺：三天内退款，十分抱歉", ["三"]),
        ("Card ending 1234 was charged", ["1234"]),
    ],
)
def test_a_line_is_grounded_only_by_what_the_transcript_says(line, missing):
    sources = sources_of(["CUSTOMER: charged twice on order 4412, 59 dollars", "AGENT: within 5 days"])
    assert ungrounded(line, sources) == missing


@pytest.mark.unit
def test_numbers_are_compared_as_values_in_words_digits_and_chinese():
    assert {255, 25, 350, 2, 1200} <= number_values(
        "two hundred and fifty five, twenty five, 三百五十, 两次, 1,200"
    )
    assert 1 not in number_values("一下")  # a word, not a number


@pytest.mark.unit
def test_a_note_drops_invented_lines_spells_out_none_and_is_redacted():
    # a number the transcript's redaction missed, echoed by the model: redacted on the way out
    turns = [Turn("customer", "I want a refund for order 4412, card 4111 1111 1111 1234."),
             Turn("agent", "I will refund it today.")]  # fmt: skip
    text = ("Need: A refund for order 4412 on card 4111 1111 1111 1234.\nVerified: Identity checked by John.\n"
            "Promised: Refund within 7 days.\nRisk: none")  # fmt: skip
    note = build_note("c1", text, turns, "en", stats=ZERO)
    by_field = {line.field: line for line in note.lines}
    assert "4111" not in by_field["need"].text
    assert "••••1234" in by_field["need"].text
    assert by_field["verified"].text == ""
    assert by_field["verified"].dropped
    assert by_field["promised"].text == ""
    assert by_field["promised"].dropped
    assert by_field["risk"].text == ""
    assert not by_field["risk"].dropped
    assert note.rendered()[1:] == ["Verified: none", "Promised: none", "Risk: none"]


@pytest.mark.unit
def test_a_postcall_note_reads_the_disposition_and_becomes_a_typed_record():
    turns = [Turn("customer", "我要投诉，请转主管。"), Turn("agent", "好的，我帮您转接主管。")]
    text = (
        "需求：投诉\n已核实：无\n承诺：转接主管\n风险：客户不满\n处理结果：escalated\n原因：客户要求转接主管"
    )
    note = build_note("c2", text, turns, "zh", stats=ZERO, postcall=True)
    record = PostCallSummary.of(note)
    assert (record.outcome, record.verified, record.promised) == ("escalated", "", "转接主管")
    assert record.lines[-1] == "处理结果：escalated (客户要求转接主管)"
    assert parse_note("需求：投诉\n已核实：无\n承", "zh").fields["promised"] == ""  # cut short


@pytest.mark.unit
def test_a_reply_keeps_its_shown_card_and_only_grounded_sentences():
    turns = [Turn("customer", "I was charged twice.")]
    text = "[kb-dup-refund] Duplicate charge refund: Sorry about that. The refund takes 3 to 5 working days. You get 20 dollars credit."
    draft = build_reply("c1", "r1", text, turns, CARDS, "en", stats=ZERO)
    assert draft.snippet_id == "kb-dup-refund"
    assert draft.text == "Sorry about that. The refund takes 3 to 5 working days."
    assert draft.dropped == 1
    other = build_reply("c1", "r2", "[kb-unknown] Hello.", turns, CARDS, "en", stats=ZERO)
    assert other.snippet_id is None


@pytest.mark.unit
def test_grammars_force_the_labelled_lines_and_a_shown_card():
    assert summary_grammar("zh", postcall=True).startswith('root ::= "需求：" line "\\n已核实：" line')
    assert '"resolved" | "follow-up" | "escalated"' in summary_grammar("en", postcall=True)
    assert reply_grammar(['a"b', "c"]).startswith('root ::= "[" ("a\\"b" | "c") "] " line')


@pytest.mark.unit
def test_the_window_keeps_the_opening_and_the_newest_turns_and_moves_in_steps():
    turns = [Turn("customer" if i % 2 else "agent", f"turn {i} " + "x" * 80) for i in range(60)]
    kept, skipped = window(turns, 3000)
    assert kept[:2] == turns[:2]
    assert kept[-1] == turns[-1]
    assert skipped % 8 == 0
    assert skipped > 0
    again, _ = window([*turns, Turn("agent", "one more")], 3000)
    assert again[2] == kept[2]  # one more turn: the same cut, so the cached prefix survives
    prompt = summary_prompt(turns, "en", max_tokens=64, budget_chars=3000)
    assert "…" in prompt.messages[1].content
    assert "turn 59" in prompt.messages[1].content


@pytest.mark.unit
def test_language_and_fingerprint():
    zh = [Turn("customer", "我想退款")]
    assert call_language("auto", zh) == "zh"
    assert call_language("en", zh) == "en"
    assert fingerprint("en", zh) != fingerprint("en", [*zh, Turn("agent", "好的")])
    assert default_threads(2) == 1
    assert default_threads(8) == 4


@pytest.mark.unit
def test_the_join_is_hash_checked_and_atomic(monkeypatch, tmp_path):
    monkeypatch.setenv("ASSIST_MODEL_CACHE", str(tmp_path / "cache"))
    parts = []
    for i, chunk in enumerate((b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5), 1):
        parts.append(tmp_path / f"part{i:02d}.bin")
        parts[-1].write_bytes(chunk)
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()
    with pytest.raises(ModelNotFoundError, match="hashes to"):
        llm_model_dir(progress=False, parts=parts, sha256="0" * 64)
    target = tmp_path / "cache" / "models" / "qwen2.5-coder-1.5b-instruct-q4km"
    assert not list(target.glob("*"))  # nothing half-made is left
    folder = llm_model_dir(progress=False, parts=parts, sha256=digest)
    stamp = (folder / "model.gguf").stat().st_mtime_ns
    assert (folder / "model.gguf").read_bytes()[:4] == b"GGUF"
    assert llm_model_dir(progress=False, parts=parts, sha256=digest) == folder
    assert (folder / "model.gguf").stat().st_mtime_ns == stamp  # not joined twice


# --------------------------------------------------------------------------------------- a service


@dataclass
class LlmServer:
    base: str
    loop: asyncio.AbstractEventLoop
    bus: InMemoryBus
    stop: Any

    def client(self, who: tuple[str, str] = AGENT, timeout: float = 240.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {who[0]}"}, timeout=timeout
        )

    def publish(self, event: Event) -> None:
        asyncio.run_coroutine_threadsafe(self.bus.publish(event), self.loop).result(10)

    def call(
        self, call_id: str, turns: Sequence[tuple[Channel, str]], lang: str, cards: Sequence[Card] = ()
    ) -> None:
        """A call as the pipeline publishes it: started, finals, the cards the agent was shown."""
        self.publish(Event("call.started", call_id, None, 0.0, 0.0,
                           CallStarted("test", lang, ("agent", "customer"), True, {"agent_id": "alice"})))  # fmt: skip
        t = 0.0
        for channel, text in turns:
            self.publish(Event("transcript.final", call_id, channel, t, t + 2.0,
                               TranscriptFinal(text, (), lang, int(t))))  # fmt: skip
            t += 2.5
        for card in cards:
            self.publish(Event("suggestion", call_id, "customer", t, t,
                               Suggestion(card.snippet_id, card.title, card.body, 0.9, "test")))  # fmt: skip
        deadline = time.monotonic() + 10
        with self.client() as c:
            while time.monotonic() < deadline:
                r = c.get(f"/v1/calls/{call_id}")
                if r.status_code == 200 and len(r.json()["transcript"]) == len(turns):
                    return
                time.sleep(0.05)
        raise AssertionError(f"the board did not fold in call {call_id}")


def start_server(tmp_path: Path, llm: LlmConfig) -> LlmServer:
    from coach.engine import Coach
    from knowledge.feedback import FeedbackLog
    from knowledge.store import SnippetStore
    from sidecar.service.app import create_app
    from sidecar.service.config import Services
    from sidecar.service.serve import make_server

    who: list[tuple[tuple[str, str], Role]] = [
        (AGENT, "agent"),
        (OTHER_AGENT, "agent"),
        (SUPERVISOR, "supervisor"),
    ]
    tokens = TokenTable([TokenEntry(tok, Principal(name, role)) for (tok, name), role in who])
    config = ServiceConfig(data_dir=tmp_path, recordings_dir=FIXTURES, kb_seed=None, tokens=tokens,
                           knowledge=False, preload_lang=None)  # fmt: skip
    store = SnippetStore(":memory:")
    bus = InMemoryBus()
    services = Services(config=config, bus=bus, tokens=tokens, store=store, feedback=FeedbackLog(store),
                        coach=Coach(embedder=None, judge=False), knowledge=None, policy=None)  # fmt: skip
    app = create_app(config, services)
    app.state.llm_config = llm
    server = make_server(app, "127.0.0.1", port := free_port())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test service did not start")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=30)

    return LlmServer(f"http://127.0.0.1:{port}", loop, bus, stop)


@pytest.fixture(scope="module")
def no_model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmServer]:
    tmp_path = tmp_path_factory.mktemp("no-model")
    server = start_server(tmp_path, LlmConfig(model_path=tmp_path / "missing.gguf"))
    yield server
    server.stop()


@pytest.mark.unit
def test_without_the_model_the_service_works_and_answers_503(no_model_server):
    no_model_server.call("n1", EN_CALL[:2], "en")
    with no_model_server.client() as c:
        caps = c.get("/v1/capabilities").json()
        assert caps["summary"] is False
        assert caps["reply"] is False
        assert "no language model at" in caps["llm"]["reason"]
        r = c.get("/v1/calls/n1/summary")
        assert r.status_code == 503
        assert "no language model at" in r.json()["detail"]
        r = c.post("/v1/calls/n1/reply")
        assert r.status_code == 503
        assert "missing.gguf" in r.json()["detail"]
        assert c.get("/v1/calls/unknown/summary").status_code == 404
        assert c.get("/v1/calls/n1").status_code == 200  # the rest of the service is unaffected
    with no_model_server.client(OTHER_AGENT) as c:
        assert c.get("/v1/calls/n1/summary").status_code == 403  # another agent's call


@pytest.mark.browser
def test_without_the_model_the_widget_shows_no_assistant_buttons(no_model_server, browser):
    no_model_server.call("n2", EN_CALL[:2], "en")
    page = browser.new_page()
    page.goto(f"{no_model_server.base}/ui/agent.html?call=n2#token={AGENT[0]}")
    page.wait_for_selector("#transcript :text('charged twice')", timeout=30_000)
    page.wait_for_load_state("networkidle")
    assert page.locator("#llm-summary:visible").count() == 0


# --------------------------------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmServer]:
    try:
        from models.registry import resolve_model

        resolve_model("llm")
    except ModelNotFoundError as exc:
        pytest.fail(f"the language model is not installed ({exc}); make install installs it")
    config = LlmConfig(mode="startup", threads=1, queue_size=1, summary_tokens=64, reply_tokens=40,
                       postcall_tokens=80, postcall="on")  # fmt: skip
    server = start_server(tmp_path_factory.mktemp("llm-service"), config)
    yield server
    server.stop()


def post(server: LlmServer, path: str) -> httpx.Response:
    with server.client() as c:
        return c.post(path)


def get(server: LlmServer, path: str) -> httpx.Response:
    with server.client(SUPERVISOR) as c:
        return c.get(path)


def note_text(body: dict[str, Any]) -> str:
    return "\n".join(body["lines"])


@pytest.mark.llm
def test_an_english_note_states_the_facts_and_none_that_are_absent(llm_server):
    llm_server.call("en1", EN_CALL, "en")
    with llm_server.client(SUPERVISOR) as c:
        r = c.get("/v1/calls/en1/summary")
    assert r.status_code == 200, r.text
    body = r.json()
    fields = {f["field"]: f["text"].lower() for f in body["fields"]}
    assert 3 <= len(body["lines"]) <= 5
    assert body["lang"] == "en"
    assert not body["cached"]
    assert "refund" in fields["need"]
    assert "refund" in fields["promised"]
    assert re.search(r"\b(5|five)\b", fields["promised"])
    text = note_text(body).lower()
    # never said: identity checks, a supervisor, a case number, any figure but 4412, 59 and five
    assert not re.search(r"identity|date of birth|supervisor|case|reference", text), text
    assert {int(n) for n in re.findall(r"\d+", text)} <= {4412, 59, 5}, text
    with llm_server.client() as c:
        again = c.get("/v1/calls/en1/summary").json()
    assert again["cached"]
    assert again["lines"] == body["lines"]


@pytest.mark.llm
@pytest.mark.browser
def test_the_summary_button_shows_the_note_in_the_agent_widget_and_the_supervisor_panel(llm_server, browser):
    """After the English note above (cached: no generation here), in headless Debian Chromium."""
    page = browser.new_page()
    page.goto(f"{llm_server.base}/ui/agent.html?call=en1#token={AGENT[0]}")
    page.click("#llm-summary", timeout=30_000)
    page.wait_for_selector("#llm-note li", timeout=240_000)
    lines = page.locator("#llm-note li").all_inner_texts()
    assert lines[0].startswith("Need:"), lines
    assert page.is_visible("#llm-reply")
    sup = browser.new_page()
    sup.goto(f"{llm_server.base}/ui/supervisor.html#token={SUPERVISOR[0]}")
    sup.click('tr[data-call-id="en1"]', timeout=30_000)
    sup.click("#llm-summary", timeout=30_000)
    sup.wait_for_selector("#call-panel #llm-note li", timeout=240_000)
    assert sup.locator("#llm-note li").all_inner_texts() == lines
    assert sup.locator("#llm-reply").count() == 0  # replies are the agent's


@pytest.mark.llm
def test_a_chinese_note_is_in_chinese_and_states_no_refund_nobody_offered(llm_server):
    llm_server.call("zh1", ZH_CALL, "zh")
    with llm_server.client(SUPERVISOR) as c:
        r = c.get("/v1/calls/zh1/summary")
    assert r.status_code == 200, r.text
    body = r.json()
    text = note_text(body)
    fields = {f["field"]: f["text"] for f in body["fields"]}
    assert body["lang"] == "zh"
    assert body["lines"][0].startswith("需求：")
    assert len(re.findall(r"[\u4e00-\u9fff]", text)) > 20
    assert "身份" in fields["verified"] or "漫游" in fields["verified"], text
    assert "账单" in fields["promised"], text
    assert "退" not in text, text
    assert "补偿" not in text, text  # nobody asked for or offered a refund


@pytest.mark.llm
def test_a_reply_cites_the_card_shown_and_a_flood_of_notes_gets_429(llm_server):
    llm_server.call("en2", EN_CALL[:3], "en", CARDS)
    for i in range(6):
        llm_server.call(f"tiny{i}", [("customer", "Hello?")], "en")
    with ThreadPoolExecutor(8) as pool:
        reply = pool.submit(post, llm_server, "/v1/calls/en2/reply")
        time.sleep(1.0)  # the reply is on the model now: the queue holds one more
        flood = [pool.submit(get, llm_server, f"/v1/calls/tiny{i}/summary") for i in range(6)]
        health = []
        with httpx.Client(base_url=llm_server.base, timeout=10) as c:
            for _ in range(10):
                started = time.perf_counter()
                assert c.get("/healthz").status_code == 200
                health.append(time.perf_counter() - started)
                time.sleep(0.05)
        answers = [f.result() for f in flood]
        r = reply.result()
    busy = [a for a in answers if a.status_code == 429]
    assert len(busy) >= 4, [a.status_code for a in answers]
    assert "busy" in busy[0].json()["detail"]
    assert busy[0].headers["retry-after"] == "5"
    assert all(a.status_code in (200, 429) for a in answers)
    assert statistics.median(health) < 0.1, health  # the event loop never waited on the model
    assert max(health) < 1.0, health
    assert r.status_code == 200, r.text
    draft = r.json()
    assert draft["snippet_id"] in {c.snippet_id for c in CARDS}, draft
    assert draft["text"], draft
    with llm_server.client() as c:
        used = c.post("/v1/calls/en2/reply/feedback", json={"reply_id": draft["reply_id"], "kind": "used",
                                                              "edited": True})  # fmt: skip
        assert used.status_code == 204
        assert (
            c.post("/v1/calls/en2/reply/feedback", json={"reply_id": "nope", "kind": "used"}).status_code
            == 404
        )
    with llm_server.client(SUPERVISOR) as c:
        assert c.get("/v1/replies/analytics").json() == {"used": 1, "used_edited": 1, "dismissed": 0}
        caps = c.get("/v1/capabilities").json()
    assert caps["llm"]["available"]
    assert caps["llm"]["loaded"]
    assert caps["summary"]


@pytest.mark.llm
def test_an_ended_call_gets_a_postcall_note_with_a_disposition(llm_server):
    llm_server.call("end1", [("customer", "I want to cancel my contract. Put me through to a supervisor."),
                             ("agent", "Of course, I am transferring you to my supervisor now.")], "en")  # fmt: skip
    llm_server.publish(Event("call.ended", "end1", None, 6.0, 6.0, CallEnded("completed", 6.0)))
    deadline = time.monotonic() + 10
    with llm_server.client(SUPERVISOR) as c:
        while not c.get("/v1/calls/end1").json()["ended"] and time.monotonic() < deadline:
            time.sleep(0.05)
        body = c.get("/v1/calls/end1/summary").json()  # waits for the post-call note
    assert body["final"], body
    assert body["outcome"] in ("resolved", "follow-up", "escalated"), body
    assert body["lines"][-1].startswith("Disposition: "), body
    assert "cancel" in body["fields"][0]["text"].lower(), body
