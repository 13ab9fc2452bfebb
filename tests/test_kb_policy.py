"""The suggestion policy on a call: triggers, confidence, no repeats, pacing, live knowledge edits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coach.engine import Coach
from coach.sink import CoachSink
from knowledge.policy import PolicyState, StoreKnowledge, SuggestionPolicy, default_policy
from knowledge.snippets import Snippet
from knowledge.store import SnippetStore
from sidecar.bus import InMemoryBus
from sidecar.callfile import load_call
from sidecar.clock import RealtimeClock
from sidecar.events import Event, Suggestion
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
    state = PolicyState(last_t=10.0, last_snippet="meter")
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
    from sidecar.events import CallStarted, TranscriptPartial, Word

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
    assert [e.payload.snippet_id for e in events if isinstance(e.payload, Suggestion)] == ["lost-card"]


async def _drain(bus: InMemoryBus, call_id: str) -> AsyncIterator[Event]:
    sub = bus.subscribe(call_id, after_seq=0)
    while True:
        try:
            yield await asyncio.wait_for(anext(sub), 0.3)
        except (TimeoutError, StopAsyncIteration):
            return
