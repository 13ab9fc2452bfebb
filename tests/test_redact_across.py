"""Redaction across utterances: a number a speaker reads in pieces is redacted as a whole, in what
is emitted next, in a ``transcript.redacted`` correction of the piece already sent, in the call's
stored transcript and in the SSE replay; a one-time code read digit by digit is redacted too.

Pure tests of ``coach.redact_stream`` (English and Chinese), the coach session that wires it, and
one call through a real service (no ML models: the coach runs its exact matchers only).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from coach.compiled import compile_rules
from coach.redact_stream import JOIN_GAP_S, StreamRedactor
from coach.rules import DEFAULT_PACK, load_rules
from coach.session import CoachSession
from sidecar.kernel.events import Event, TranscriptFinal, TranscriptPartial, TranscriptRedacted, Word
from sidecar.kernel.redact import redact

PLACEHOLDER = re.compile(r"\[(?:card|id|account) ••••[0-9A-Za-z]{0,4}\]|\[(?:phone|email|password|otp)\]")
DIGITS = re.compile(r"[0-9０-９零〇一二三四五六七八九两幺]")


def bare(text: str) -> str:
    """The text without its placeholders: what is left of the number must be no digit at all."""
    return PLACEHOLDER.sub("", text)


def words_of(text: str, lang: str, t0: float, t1: float) -> tuple[Word, ...]:
    tokens = list(text.replace(" ", "")) if lang == "zh" else text.split()
    step = (t1 - t0) / max(1, len(tokens))
    return tuple(Word(t, t0 + i * step, t0 + (i + 1) * step) for i, t in enumerate(tokens))


class Speaker:
    """Feeds one StreamRedactor the finals (and partials) of a call."""

    def __init__(self) -> None:
        self.red = StreamRedactor()
        self.segment = {"agent": 0, "customer": 0}

    def say(
        self, channel: str, text: str, t0: float, t1: float, lang: str = "en", *, final: bool = True
    ) -> Any:
        if final:
            self.segment[channel] += 1
        seg = self.segment[channel] + (0 if final else 1)
        texts, words, fixes = self.red.redact(
            channel, t0, seg, lang, [text], words_of(text, lang, t0, t1), t_end=t1, final=final
        )
        return (
            texts[0],
            "".join(w.text for w in words) if lang == "zh" else " ".join(w.text for w in words),
            fixes,
        )


# -- the pure redactor ------------------------------------------------------------------------------


def test_a_card_read_in_two_halves_is_redacted_in_both() -> None:
    s = Speaker()
    first, _, fixes = s.say("customer", "the first half is 4111 1111", 2.0, 4.0)
    assert first == "the first half is 4111 1111"
    assert not fixes
    second, second_words, fixes = s.say("customer", "and the second half is 1111 1111", 5.0, 7.5)
    assert second == "and the second half is [card ••••1111]"
    assert second_words == "and the second half is [card ••••1111]"
    assert len(fixes) == 1
    fix = fixes[0]
    assert (fix.channel, fix.segment, fix.t_start, fix.t_end) == ("customer", 1, 2.0, 4.0)
    assert fix.text == "the first half is [card ••••]"
    assert [w.text for w in fix.words] == ["the", "first", "half", "is", "[card ••••]"]
    assert fix.words[-1].t_start == pytest.approx(2.0 + 4 * 2.0 / 6)  # the word keeps its time


def test_a_chinese_card_in_two_halves() -> None:
    s = Speaker()
    first, _, _ = s.say("customer", "我的卡号前八位是六二二二零二一二", 1.0, 3.0, "zh")
    assert not DIGITS.search(bare(first).replace("前八位", ""))  # 卡号: redacted already on its own
    second, second_words, fixes = s.say("customer", "后八位是三四五六七八九零", 4.0, 6.0, "zh")
    assert second == "后八位是[card ••••7890]"
    assert second_words == second
    assert len(fixes) == 1
    assert fixes[0].segment == 1
    assert fixes[0].text == "我的卡号前八位是[card ••••]"  # the account placeholder's 0212 is gone too
    assert "".join(w.text for w in fixes[0].words) == "我的卡号前八位是[card ••••]"


def test_a_number_in_four_groups_and_a_partial_of_the_next_piece() -> None:
    s = Speaker()
    s.say("customer", "it's 4539", 0.0, 1.0)
    s.say("customer", "7188", 2.0, 3.0)
    s.say("customer", "0619", 4.0, 5.0)
    partial, _, fixes = s.say("customer", "2247", 6.0, 6.8, final=False)
    assert partial == "[card ••••2247]"  # the partial of the last piece is redacted at once
    assert sorted(f.segment for f in fixes) == [1, 2, 3]
    assert all(not DIGITS.search(bare(f.text)) for f in fixes)
    final, _, fixes = s.say("customer", "2247.", 6.0, 7.0)
    assert final == "[card ••••2247]."
    assert not fixes


def test_a_trigger_in_the_previous_utterance() -> None:
    s = Speaker()
    s.say("customer", "okay the code is", 0.0, 1.5)
    code, code_words, fixes = s.say("customer", "4 8 2 9", 2.5, 4.0)  # four digits: alone, never PII
    assert code == "[otp]"
    assert code_words == "[otp]"
    assert not fixes
    s.say("customer", "我的验证码是", 20.0, 21.0, "zh")
    code, _, _ = s.say("customer", "四八二九", 22.0, 23.0, "zh")
    assert code == "[otp]"
    s.say("agent", "what's your card number?", 30.0, 31.0)
    s.say("customer", "my card number is", 31.5, 32.5)
    card, _, _ = s.say("customer", "4111 1111", 33.0, 34.0)
    assert card == "[card ••••1111]"


@pytest.mark.parametrize(
    ("first", "second", "gap", "other_speaker"),
    [
        ("the first half is 4111 1111", "and the second half is 1111 1111", JOIN_GAP_S + 20, False),
        ("the first half is 4111 1111", "and the second half is 1111 1111", 1.0, True),
        ("that comes to 4,250", "on 12/03/2026", 1.0, False),
        ("the total is 1250", "due on 2026-12-03", 1.0, False),
        ("my order number is 4411 2233", "and 5566 7788", 1.0, False),
        ("I paid 250 dollars", "on the 3rd", 1.0, False),
        ("订单号是四四一一二二三三", "然后是五五六六", 1.0, False),
    ],
)
def test_unrelated_numbers_stay_readable(first: str, second: str, gap: float, other_speaker: bool) -> None:
    s = Speaker()
    lang = "zh" if "订单" in first else "en"
    a, _, _ = s.say("customer", first, 0.0, 2.0, lang)
    b, _, fixes = s.say("agent" if other_speaker else "customer", second, 2.0 + gap, 4.0 + gap, lang)
    assert (a, b, fixes) == (first, second, [])


# -- a one-time code read digit by digit ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4 8 2 9 1 3", "[otp]"),
        ("it's 4 8 2 9 1 3", "it's [otp]"),
        ("four eight two nine one three", "[otp]"),
        ("4, 8, 2, 9, 1, 3", "[otp]"),
        ("the code is 4 8 2 9 1 3", "the code is [otp]"),
        ("四八二九一三", "[otp]"),
        ("验证码是 4 8 2 9 1 3", "验证码是 [otp]"),
        ("验证码是四八二九一三", "验证码是[otp]"),
        # not codes: a plain six-digit number, counting, an order number, a sum, short runs
        ("482913", "482913"),
        ("1 2 3 4 5 6", "1 2 3 4 5 6"),
        ("order number 4 8 2 9 1 3", "order number 4 8 2 9 1 3"),
        ("$4 8 2 9 1 3", "$4 8 2 9 1 3"),
        ("4 8 2 9 1", "4 8 2 9 1"),
        ("余额是四八二九一三元", "余额是四八二九一三元"),
    ],
)
def test_a_spaced_one_time_code(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected


# -- through the coach session ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules() -> Any:
    return compile_rules(load_rules(DEFAULT_PACK), None)


def transcript_texts(event: Event) -> list[str]:
    p = event.payload
    if isinstance(p, TranscriptPartial):
        return [p.text, p.stable_text, *(w.text for w in p.words)]
    if isinstance(p, TranscriptFinal | TranscriptRedacted):
        return [p.text, *(w.text for w in p.words)]
    return []


def test_the_coach_session_corrects_the_first_half(rules: Any) -> None:
    session = CoachSession("c1", "en", rules, None)
    out: list[list[Event]] = []

    def feed(kind: str, text: str, t0: float, t1: float, segment: int) -> None:
        words = words_of(text, "en", t0, t1)
        payload: Any = (TranscriptPartial(text, text.rsplit(" ", 1)[0], words, "en", segment) if kind == "partial"
                        else TranscriptFinal(text, words, "en", segment))  # fmt: skip
        out.append(session.process(Event(f"transcript.{kind}", "c1", "customer", t0, t1, payload)))  # type: ignore[arg-type]

    feed("final", "Hi, I'd like to pay my bill.", 0.0, 2.0, 1)
    feed("partial", "the first half is 4111", 3.0, 4.0, 2)
    feed("final", "the first half is 4111 1111", 3.0, 5.0, 2)
    feed("partial", "and the second half is 1111", 6.0, 7.0, 3)
    feed("partial", "and the second half is 1111 1111", 6.0, 8.0, 3)
    feed("final", "and the second half is 1111 1111", 6.0, 8.5, 3)
    after = [e for batch in out[3:] for e in batch]
    fixes = [e for e in after if e.type == "transcript.redacted"]
    # the first partial of the second half already corrects the first half (twelve digits: a phone
    # number), the one that completes sixteen names it a card; the final adds nothing
    assert [e.type for e in out[3]][:2] == ["transcript.partial", "transcript.redacted"]
    assert [e.type for e in out[5]].count("transcript.redacted") == 0
    assert 1 <= len(fixes) <= 2
    for fix in fixes:
        assert isinstance(fix.payload, TranscriptRedacted)
        assert (fix.channel, fix.payload.segment, fix.t_start, fix.t_end) == ("customer", 2, 3.0, 5.0)
        assert fix.call_id == "c1"
    assert fixes[-1].payload.text == "the first half is [card ••••]"  # type: ignore[union-attr]
    for event in after:  # after the second half began, no event holds a digit of the card
        for text in transcript_texts(event):
            assert not DIGITS.search(bare(text)), (event.type, text)
        assert "4111" not in event.to_json()
    # the finals as a board keeps them (a correction replaces its segment's text): nothing rebuildable
    stored: dict[tuple[str | None, int], str] = {}
    for event in (e for batch in out for e in batch):
        if isinstance(event.payload, TranscriptFinal | TranscriptRedacted):
            stored[(event.channel, event.payload.segment)] = event.payload.text
    assert stored == {
        ("customer", 1): "Hi, I'd like to pay my bill.",
        ("customer", 2): "the first half is [card ••••]",
        ("customer", 3): "and the second half is [card ••••1111]",
    }


# -- through a real service -------------------------------------------------------------------------

CALL = [
    ("agent", "Thank you for calling, how can I help?", 0.2, 1.8),
    ("customer", "I want to pay by card.", 2.0, 3.0),
    ("agent", "Sure, go ahead with the card number.", 3.2, 4.5),
    ("customer", "the first half is 4111 1111", 5.0, 7.0),
    ("customer", "and the second half is 1111 1111", 8.0, 10.0),
    ("agent", "Thanks. I've sent you a code, can you read it out?", 10.5, 12.5),
    ("customer", "it's 4 8 2 9 1 3", 13.0, 15.0),
    ("agent", "Thanks, that's verified.", 15.5, 16.5),
]


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import uvicorn

    from coach.engine import Coach
    from knowledge.feedback import FeedbackLog
    from knowledge.store import SnippetStore
    from sidecar.kernel.bus import InMemoryBus
    from sidecar.service.app import create_app
    from sidecar.service.auth import Principal, TokenEntry, TokenTable
    from sidecar.service.config import ServiceConfig, Services
    from sidecar.service.serve import make_server
    from tests.service_helpers import free_port

    root = tmp_path_factory.mktemp("across")
    recordings = root / "recordings"
    recordings.mkdir()
    (recordings / "card.jsonl").write_text(
        "".join(
            json.dumps({"channel": c, "text": t, "start_s": s, "end_s": e}) + "\n" for c, t, s, e in CALL
        ),
        encoding="utf-8",
    )
    token = "supervisor-across-token"
    tokens = TokenTable([TokenEntry(token, Principal("sam", "supervisor"))])
    config = ServiceConfig(data_dir=root / "data", recordings_dir=recordings, kb_seed=None, tokens=tokens,
                           knowledge=False, preload_lang=None)  # fmt: skip
    config.data_dir.mkdir()
    store = SnippetStore(":memory:")
    services = Services(config=config, bus=InMemoryBus(), tokens=tokens, store=store, feedback=FeedbackLog(store),
                        coach=Coach(embedder=None, judge=False), knowledge=None, policy=None)  # fmt: skip
    server: uvicorn.Server = make_server(create_app(config, services), "127.0.0.1", port := free_port())
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name="across", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test service did not start")
        time.sleep(0.05)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                          timeout=60)  # fmt: skip
    try:
        yield client
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=30)


def test_the_service_keeps_and_streams_no_rebuildable_card(light: httpx.Client) -> None:
    from tests.service_helpers import read_sse

    r = light.post("/v1/calls", json={"recording": "card.jsonl", "realtime": False, "agent_id": "alice"})
    assert r.status_code == 201, r.text
    call_id = r.json()["call_id"]
    deadline = time.monotonic() + 60
    detail: dict[str, Any] = {}
    while time.monotonic() < deadline:
        detail = light.get(f"/v1/calls/{call_id}").json()
        if detail["ended"]:
            break
        time.sleep(0.1)
    assert detail["ended"], "the call did not end"

    texts = [(t["channel"], t["segment"], t["text"]) for t in detail["transcript"]]
    assert ("customer", 2, "the first half is [card ••••]") in texts
    assert ("customer", 3, "and the second half is [card ••••1111]") in texts
    assert ("customer", 4, "it's [otp]") in texts
    body = json.dumps(detail, ensure_ascii=False)
    assert "4111" not in body
    assert "1111 1111" not in body
    assert "4 8 2 9" not in body
    for _, _, text in texts:
        assert not DIGITS.search(bare(text)), text

    # the SSE replay of the whole call: the correction is there, and no transcript event holds the digits
    with light.stream("GET", f"/v1/calls/{call_id}/events", params={"after": 0}) as resp:
        assert resp.status_code == 200
        messages = list(read_sse(resp))
    assert messages[-1]["event"] == "call.ended"
    kinds = [m["event"] for m in messages]
    assert kinds.count("transcript.redacted") == 1
    fix = messages[kinds.index("transcript.redacted")]["data"]
    assert (fix["channel"], fix["payload"]["segment"]) == ("customer", 2)
    assert fix["payload"]["text"] == "the first half is [card ••••]"
    for m in messages:
        if m["event"].startswith("transcript."):
            p = m["data"]["payload"]
            for text in [p["text"], *(w["text"] for w in p["words"])]:
                assert not DIGITS.search(bare(text)), (m["event"], text)
    stream = "\n".join(json.dumps(m["data"], ensure_ascii=False) for m in messages)
    assert "4111" not in stream
    assert "1111 1111" not in stream
    assert "4 8 2 9" not in stream


def test_another_speakers_turn_ends_the_number_but_a_backchannel_does_not() -> None:
    s = Speaker()
    s.say("customer", "the first half is 4111 1111", 0.0, 2.0)
    s.say("agent", "okay", 2.2, 2.6)
    second, _, fixes = s.say("customer", "and the second half is 1111 1111", 3.0, 5.0)
    assert second == "and the second half is [card ••••1111]"
    assert len(fixes) == 1
    s.say("customer", "my old one was 5500 0000", 20.0, 22.0)
    s.say("agent", "Sorry, could you repeat that please?", 22.2, 23.5)
    again, _, fixes = s.say("customer", "5500 0000", 24.0, 25.0)
    assert (again, fixes) == ("5500 0000", [])
