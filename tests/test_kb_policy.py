"""The suggestion policy on a call: triggers, confidence, no repeats, pacing, live knowledge edits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coach.engine import Coach
from coach.sink import CoachSink
from knowledge.policy import (
    PolicyConfig,
    PolicyState,
    StoreKnowledge,
    SuggestionPolicy,
    default_policy,
    default_reranker,
)
from knowledge.snippets import Snippet
from knowledge.store import SnippetStore
from sidecar.callfile import load_call
from sidecar.kernel.bus import InMemoryBus
from sidecar.kernel.clock import RealtimeClock
from sidecar.kernel.events import Event, Suggestion
from sidecar.replay import replay_transcript

pytestmark = pytest.mark.model

SNIPPETS = [
    Snippet("lost-card", "Blocking a lost or stolen card", "Verify the caller, block the card at once, order a "
            "replacement, review recent transactions with the customer.", ("cards", "fraud"), "en"),
    Snippet("boiler", "Boiler breakdown cover", "Book an engineer visit within 24 hours for a broken boiler; "
            "vulnerable customers get a same-day slot.", ("home", "repairs"), "en"),
    Snippet("baggage", "Delayed or lost baggage claims", "Take the baggage tag number, open a claim, explain "
            "the interim expenses allowance.", ("travel", "baggage"), "en", triggers=("baggage tag",)),
    Snippet("meter", "Submitting a meter reading", "Take the reading and date, explain estimated bills.",
            ("utilities", "billing"), "en"),
    Snippet("zh-lost-card", "挂失银行卡", "核实身份后立即冻结卡片，补办新卡，核对近期交易。", ("银行卡",), "zh"),
]  # fmt: skip


@pytest.fixture(scope="module")
def coach() -> Coach:
    return Coach()


def knowledge(coach: Coach) -> StoreKnowledge:
    store = SnippetStore(":memory:")
    for s in SNIPPETS:
        store.upsert(s, actor="test")
    assert coach.embedder is not None
    return StoreKnowledge(store, coach.embedder)


def test_policy_pushes_the_right_procedure_once(coach: Coach) -> None:
    policy = default_policy(knowledge(coach))
    state = PolicyState()
    state, first = policy.decide(state, "Somebody stole my purse with my debit card in it this morning.", 5.0)
    assert [f.snippet_id for f in first][:1] == ["lost-card"]
    # the same topic again right after: never the same card twice in a row, and paced
    state, again = policy.decide(state, "Yes, the debit card was stolen with my purse.", 8.0)
    assert again == []
    # a trigger phrase fires directly, with its phrase as the reason
    state, trig = policy.decide(state, "I have the baggage tag right here.", 30.0)
    assert [(f.snippet_id, f.score) for f in trig] == [("baggage", 1.0)]
    assert "baggage tag" in trig[0].reason


def test_small_talk_pushes_nothing(coach: Coach) -> None:
    policy = default_policy(knowledge(coach))
    state = PolicyState()
    for t, text in enumerate(
        ["Hi there.", "Yes, that's right.", "Okay, thank you so much.", "No, that's all."]
    ):
        state, out = policy.decide(state, text, 20.0 * t)
        assert out == [], text


def test_cross_lingual_query_finds_the_procedure(coach: Coach) -> None:
    k = knowledge(coach)
    hits = k.search("我的银行卡被偷了", k=5, lang="en")
    assert hits[0].snippet_id == "lost-card"
    hits = k.search("my bank card was stolen", k=5, lang="zh")
    assert hits[0].snippet_id == "zh-lost-card"


def test_pacing_gives_way_to_an_intent(coach: Coach) -> None:
    policy = SuggestionPolicy(knowledge(coach))
    state = PolicyState(last_t=10.0, last_push=frozenset({"meter"}))
    state, paced = policy.decide(state, "My boiler broke down and there is no hot water.", 12.0)
    assert paced == []  # within 10 s of the last card, no intent
    _, urgent = policy.decide(
        state, "My boiler broke down and I want compensation.", 13.0, ["refund_request"]
    )
    assert urgent, "an intent makes a card due at once"


async def test_a_knowledge_edit_reaches_a_running_call(coach: Coach, tmp_path: Path) -> None:
    k = knowledge(coach)
    policy = SuggestionPolicy(k)
    turns = [
        ("customer", f"Just chatting about the weather, part {i}.", 0.3 * i, 0.3 * i + 0.2) for i in range(4)
    ]
    turns.append(("customer", "Can you tell me about the purple elephant offer?", 1.6, 1.8))
    path = tmp_path / "call.jsonl"
    path.write_text("".join(json.dumps({"channel": c, "text": t, "start_s": s, "end_s": e}) + "\n"
                            for c, t, s, e in turns), encoding="utf-8")  # fmt: skip
    clock = RealtimeClock()
    bus = InMemoryBus(clock)
    seen: list[Suggestion] = []

    async def collect() -> None:
        async for ev in bus.subscribe("kb1", after_seq=0):
            if isinstance(ev.payload, Suggestion):
                seen.append(ev.payload)

    reader = asyncio.create_task(collect())
    sink = CoachSink(coach, bus, knowledge=policy)
    replay = asyncio.create_task(replay_transcript(
        load_call(path, "customer"), call_id="kb1", bus=bus, clock=clock, lang="en", realtime=True, emit=sink))  # type: ignore[arg-type]  # fmt: skip
    await asyncio.sleep(0.5)  # the call is running; a knowledge manager publishes a new snippet
    new = Snippet("elephant", "The purple elephant offer", "Explain the offer.", ("offers",), "en",
                  triggers=("purple elephant",))  # fmt: skip
    await asyncio.to_thread(k.store.upsert, new, "km")
    await replay
    await reader
    assert [s.snippet_id for s in seen] == ["elephant"]


async def test_a_long_turn_gets_its_procedure_before_it_ends(coach: Coach) -> None:
    from sidecar.kernel.events import CallStarted, TranscriptPartial, Word

    bus = InMemoryBus(RealtimeClock())
    sink = CoachSink(coach, bus, knowledge=default_policy(knowledge(coach)))
    await sink(
        Event("call.started", "kb2", None, 0, 0, CallStarted("test", "en", ("agent", "customer"), False))
    )
    said = "Somebody stole my purse on the bus this morning and my debit card was in it"
    words = tuple(Word(w, 0.3 * i, 0.3 * i + 0.3) for i, w in enumerate(said.split()))
    partial = TranscriptPartial(said + " and", said, words, "en", 1)
    out = await sink(Event("transcript.partial", "kb2", "customer", 0.0, 4.8, partial))
    assert out.type == "transcript.partial"
    events = [e async for e in _drain(bus, "kb2")]
    pushed = [e.payload.snippet_id for e in events if isinstance(e.payload, Suggestion)]
    assert pushed[:1] == ["lost-card"]  # first in its stack


async def _drain(bus: InMemoryBus, call_id: str) -> AsyncIterator[Event]:
    sub = bus.subscribe(call_id, after_seq=0)
    while True:
        try:
            yield await asyncio.wait_for(anext(sub), 0.3)
        except (TimeoutError, StopAsyncIteration):
            return


INVESTING = Snippet("investing", "Investment risk wording", "Before describing any fund, say that investments can "
                    "go down as well as up and returns are not guaranteed.", ("investment", "risk"), "en")  # fmt: skip


def test_a_reply_takes_its_topic_from_what_the_agent_said(coach: Coach) -> None:
    k = knowledge(coach)
    k.store.upsert(INVESTING, actor="test")
    # no threshold: which procedure comes first is the point here
    policy = SuggestionPolicy(k, PolicyConfig(min_z=-9.0, solo_z=-9.0), reranker=default_reranker())
    pitch = "While I have you, our growth fund would double your savings in three years with zero risk."
    reply = "Really? That sounds too good to be true, what's the catch?"
    _, alone = policy.decide(PolicyState(), reply, 40.0, ["info_request"])
    _, in_context = policy.decide(PolicyState(), reply, 40.0, ["info_request"], pitch)
    assert [f.snippet_id for f in alone][:1] != ["investing"]
    assert [f.snippet_id for f in in_context][:1] == ["investing"]


def test_close_procedures_come_as_a_ranked_stack(coach: Coach) -> None:
    policy = default_policy(knowledge(coach))
    _, stack = policy.decide(
        PolicyState(),
        "My card was stolen at the airport and my suitcase never arrived either.",
        5.0,
        ["complaint"],
    )
    ids = [f.snippet_id for f in stack]
    assert set(ids[:2]) == {"lost-card", "baggage"}, ids
    assert [f.score for f in stack] == sorted((f.score for f in stack), reverse=True)
    assert len(ids) <= policy.config.max_cards


def test_a_second_topic_in_its_own_sentence_joins_the_stack(coach: Coach) -> None:
    policy = default_policy(knowledge(coach))
    _, stack = policy.decide(
        PolicyState(),
        "My boiler broke down last night and there is no heating at all. "
        "Also, I have the baggage claim from my flight here, nothing has turned up in two weeks.",
        5.0,
        ["complaint"],
    )
    assert {"boiler", "baggage"} <= {f.snippet_id for f in stack}


def test_a_procedure_comes_back_when_its_topic_does_but_never_twice_in_a_row(coach: Coach) -> None:
    policy = default_policy(knowledge(coach))
    stolen = "Somebody stole my purse with my debit card in it this morning."
    state, first = policy.decide(PolicyState(), stolen, 5.0, ["complaint"])
    assert first[0].snippet_id == "lost-card"
    # an answer to the agent's question is not a decision: the card stays the last one pushed
    state, none = policy.decide(state, "Yes please, do both.", 12.0)
    assert none == []
    state, again = policy.decide(state, "And is my stolen debit card blocked now?", 40.0, ["info_request"])
    assert "lost-card" not in {f.snippet_id for f in again}  # twice in a row: no
    state, _ = policy.decide(
        state, "My boiler broke down and there is no hot water at all.", 60.0, ["complaint"]
    )
    _, later = policy.decide(state, "Wait, what about my stolen debit card then?", 90.0, ["info_request"])
    assert "lost-card" in {f.snippet_id for f in later}  # its topic again, after another: yes


def test_the_panel_and_its_weights_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from knowledge.policy import PANEL, panel
    from sidecar.kernel.errors import ConfigError

    monkeypatch.delenv("ASSIST_KB_PANEL", raising=False)
    assert panel() == PANEL
    monkeypatch.setenv("ASSIST_KB_PANEL", "embed-e5, embed-minilm:0.5")
    assert panel() == (("embed-e5", 1.0), ("embed-minilm", 0.5))
    for bad in ("embed-e5:heavy", "embed-e5:-1", "embed-e5:0"):
        monkeypatch.setenv("ASSIST_KB_PANEL", bad)
        with pytest.raises(ConfigError, match="ASSIST_KB_PANEL"):
            panel()
