"""The judge: labels read from meaning, fitted from the rule pack, and what happens when it fails.

The paraphrase tables below were written for these tests, fresh: they are in no call set and in
no corpus file of the pack (a test checks that). They score the judge as a whole, per language,
with a margin (a learned reader is not a phrase list: a table passes when most of it is read
right, and no hard negative table may be read as the label more than rarely).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from coach.engine import Coach
from coach.judge import HEADS, FitCache, Judge, JudgeRunner, JudgeSettings, Reading, fit_judge, load_panel
from coach.rules import DEFAULT_PACK, Category, RulePackError, load_rules
from coach.session import CoachSession
from sidecar.kernel.errors import ConfigError
from sidecar.kernel.events import CallEnded, Event, TranscriptFinal

pytestmark = pytest.mark.model

# label → (channel, positives, hard negatives), per language
TABLES: dict[str, dict[str, tuple[str, list[str], list[str]]]] = {
    "en": {
        "abuse": (
            "agent",
            [
                "Honestly a toddler could have worked out how to plug that charger in.",
                "Do you ever actually listen, or do you just like the sound of your own voice?",
                "Wow, that's a new level of clueless, even for one of our callers.",
                "I'm not going to spell it out again for someone who clearly can't follow simple steps.",
            ],
            [
                "No problem at all, these settings confuse a lot of people, let's go through it together.",
                "I understand you're upset, and you have every right to be.",
                "That plug is a bit fiddly, I'll stay on the line while you try it.",
            ],
        ),
        "false_promise": (
            "agent",
            [
                "Trust me, the council will approve your permit this week, no doubt about it.",
                "Your visa appointment will definitely be moved up, I guarantee it personally.",
                "I can promise you this boiler will never break down again.",
            ],
            [
                "I can't promise the council's decision, but I'll make sure your file is complete today.",
                "Appointments usually open up within two weeks, though I can't say for certain.",
                "I'll call you back on Thursday with an update either way.",
            ],
        ),
        "misleading_claim": (
            "agent",
            [
                "This gold savings plan simply cannot lose value, it's as safe as cash under the mattress.",
                "There's no cancellation fee at all, whatever the contract says.",
                "Vintage watches only ever go up in price, it's basically free money.",
            ],
            [
                "The plan's value can go down as well as up, so please read the key facts first.",
                "There is a cancellation fee of 40 pounds, it's on page two of the agreement.",
                "Past performance isn't a reliable guide to what the watch will be worth.",
            ],
        ),
        "refund_request": (
            "customer",
            [
                "The plumber never showed up on Saturday, so I'd like the call-out fee put back on my card.",
                "Half the course sessions were cancelled, surely I'm owed something for those?",
            ],
            [
                "How long does a refund normally take to show up once it's approved?",
                "The money for the cancelled tickets arrived this morning, thanks for that.",
            ],
        ),
        "cancel_threat": (
            "customer",
            [
                "If the price goes up again in January I'm taking the whole family's plans elsewhere.",
                "Honestly I'm this close to closing everything and going with your competitor.",
            ],
            [
                "I need to cancel Thursday's dentist appointment, something came up at work.",
                "What's the notice period if I ever wanted to end the lease early?",
            ],
        ),
        "escalation_request": (
            "customer",
            [
                "I'm not discussing this with you any further, put me through to your manager.",
                "I want a formal complaint opened and I'll be writing to the ombudsman as well.",
            ],
            [
                "Could you transfer me to the billing team, please? It's about an invoice.",
                "Can someone call me back after five? I'm at work until then.",
            ],
        ),
    },
    "zh": {
        "abuse": (
            "agent",
            [
                "这种问题小学生都会，您怎么就弄不明白呢？",
                "你脑子是不是不太好使，我都说了三遍了。",
            ],
            [
                "没关系，这个设置确实有点复杂，我一步一步带您操作。",
                "理解您着急的心情，我马上帮您查一下。",
            ],
        ),
        "misleading_claim": (
            "agent",
            [
                "这款黄金理财稳赚不赔，放心买就行，绝对不会亏。",
                "您今天不办，明天这个价格就没了，错过就亏大了。",
            ],
            [
                "这款产品有一定风险，净值可能会下跌，请您仔细阅读说明书。",
                "优惠到本月底结束，具体条件我发短信给您看一下。",
            ],
        ),
        "refund_request": (
            "customer",
            ["健身房装修关了一个月，这个月的会费是不是该退给我？"],
            ["退款已经到账了，谢谢你们处理得这么快。"],
        ),
        "cancel_threat": (
            "customer",
            ["再这样下去我就不续了，换一家学校算了。"],
            ["我想把下周二的预约取消一下，改到周五可以吗？"],
        ),
        "escalation_request": (
            "customer",
            ["这件事你处理不了，让你们主管来接电话。"],
            ["麻烦帮我转一下售后部门，我问问保修的事。"],
        ),
    },
}


@pytest.fixture(scope="module")
def judge() -> Judge:
    return fit_judge(load_rules(DEFAULT_PACK).categories, load_panel())


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_fresh_paraphrases_are_read_by_meaning(judge: Judge, lang: str) -> None:
    """At the pack's thresholds: at least half of each language's fresh positives are read as their
    label (measured with the round-3 corpus: en 11 of 16, zh 7 of 7; none of the 22 hard negatives),
    and almost no hard negative is."""
    hits, total, false, negatives = [], 0, [], 0
    for label, (channel, positives, hard) in TABLES[lang].items():
        hits += [(label, s) for s in positives if judge.read([s], channel).carries(label)]
        false += [(label, s) for s in hard if judge.read([s], channel).carries(label)]
        total += len(positives)
        negatives += len(hard)
    assert len(hits) >= 0.5 * total, f"{lang}: only {hits} read right"
    assert len(false) <= max(1, negatives // 6), f"{lang}: hard negatives read as violations: {false}"


def test_the_tables_are_not_in_the_pack() -> None:
    corpus = {t for c in load_rules(DEFAULT_PACK).categories for t in (*c.examples, *c.negatives)}
    for tables in TABLES.values():
        for _, positives, negatives in tables.values():
            assert not corpus & {*positives, *negatives}


def test_customer_tone_is_a_temperature(judge: Judge) -> None:
    angry = judge.read(["This is the fourth time I've called and nobody has done a single thing, I'm furious."],
                       "customer")  # fmt: skip
    pleased = judge.read(["Oh that's brilliant, thank you so much for sorting it so quickly."], "customer")
    assert angry.temperature is not None
    assert pleased.temperature is not None
    assert angry.temperature < -0.3 < 0.0 < pleased.temperature


def _pack(tmp_path: Path, body: str) -> Path:
    (tmp_path / "judge.yaml").write_text("pack: t\nversion: 1\nlang: en\n" + body, encoding="utf-8")
    return tmp_path


def test_a_category_needs_a_definition_and_enough_examples(tmp_path: Path) -> None:
    body = """categories:
  - id: judge.rudeness
    label: unprofessional
    kind: violation
    message: Be polite.
    examples: [you are slow, go away]
"""
    with pytest.raises(RulePackError) as err:
        load_rules(_pack(tmp_path, body))
    text = "\n".join(err.value.problems)
    assert "needs 'definition'" in text
    assert "2 examples; at least 8" in text


def test_a_match_may_only_name_labels_the_pack_teaches(tmp_path: Path) -> None:
    body = """disclosures:
  - id: d.rec
    step: recording_notice
    message: Say it.
    match: {judge: [recording_notce]}
"""
    with pytest.raises(RulePackError, match="has no category in the pack"):
        load_rules(_pack(tmp_path, body))


def _final(text: str, channel: str = "agent", t: float = 1.0, seg: int = 1) -> Event:
    return Event("transcript.final", "c1", channel, t, t + 2.0,  # type: ignore[arg-type]
                 TranscriptFinal(text, (), "en", seg, None, "estimated"))  # fmt: skip


def _ended(t: float) -> Event:
    return Event("call.ended", "c1", None, 0.0, t, CallEnded("completed", t, {}))


def test_a_judge_that_will_not_load_leaves_the_exact_matchers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSIST_JUDGE_PANEL", "embed-nowhere")
    coach = Coach()
    assert coach.judge is None
    assert coach.judge_failures == 1
    session = coach.session("c1", "en")
    out = session.process(_final("Can you read me the PIN for your card, please?"))
    assert any(e.type == "alert" and e.payload.category == "privacy_leak" for e in out)  # type: ignore[union-attr]


class _SlowJudge(Judge):
    """A fake for a fault we cannot cause on demand: a judge slower than its budget."""

    def read(self, units, channel):
        time.sleep(0.5)
        return Reading({"abuse": 0.99}, {"abuse": units[0]}, None, 500.0, {"abuse": 0.5})


def test_a_judge_over_its_budget_is_a_counted_miss_and_the_call_goes_on() -> None:
    coach = Coach(judge=False)
    runner = JudgeRunner(_SlowJudge(()), budget_s=0.05)
    session = CoachSession("c1", "en", coach.compiled, coach.embedder, judge=runner)
    t0 = time.monotonic()
    out = session.process(_final("Thanks for waiting, the engineer is booked for Monday."))
    assert time.monotonic() - t0 < 0.45
    assert next(e.type for e in out) == "transcript.final"
    assert not any(e.type == "alert" for e in out)
    ended = session.process(_ended(10.0))[-1]
    assert isinstance(ended.payload, CallEnded)
    assert ended.payload.stats["judge_misses"] == 1.0
    assert runner.timeouts == 1


SMALL_PACK = """pack: small
version: 1
lang: en
categories:
  - id: judge.abuse.small
    label: abuse
    kind: violation
    channel: agent
    definition: The agent insults the customer's intelligence.
    message: Stop insulting the customer.
    examples: [you are an absolute idiot, only a fool would do that, are you stupid or what,
               what a moron you are, you clearly have no brain, honestly you are thick as a plank,
               even a child would understand this you dimwit, you must be the dumbest caller today]
  - id: judge.talk.small
    label: agent_talk
    kind: background
    channel: agent
    examples: [thanks for calling how can I help, let me check that for you, your parcel ships tomorrow,
               I have updated the address on the order, is there anything else today, the refund is on its way,
               I will send you an email with the details, have a lovely afternoon, one moment while I look]
"""


async def test_a_pack_category_reaches_running_calls_and_its_edits_on_reload(tmp_path: Path) -> None:
    """A category the pack teaches raises its alert through a call; a changed pack is refitted on
    reload and the running session reads with the new judge (no code, no restart)."""
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "small.yaml").write_text(SMALL_PACK, encoding="utf-8")
    coach = Coach(pack)
    assert coach.judge is not None
    session = coach.session("c1", "en")
    out = await asyncio.to_thread(session.process, _final("you really are a complete idiot"))
    alerts = [e.payload for e in out if e.type == "alert"]
    assert [a.category for a in alerts] == ["abuse"]  # type: ignore[union-attr]
    assert alerts[0].message == "Stop insulting the customer."  # type: ignore[union-attr]
    edited = SMALL_PACK.replace("Stop insulting the customer.", "Apologise now.").replace(
        "version: 1", "version: 2"
    )
    (pack / "small.yaml").write_text(edited, encoding="utf-8")
    assert await asyncio.to_thread(coach.reload_if_changed)
    out = await asyncio.to_thread(session.process, _final("what an idiot you are", t=5.0, seg=2))
    assert [e.payload.message for e in out if e.type == "alert"] == ["Apologise now."]  # type: ignore[union-attr]


class _FixedJudge(Judge):
    """A spy with a fixed reading: records what the session asks it to read, so the session's own
    contract (which words are read together, what becomes an intent) is tested apart from the model."""

    def __init__(self, scores: dict[str, float], evidence: dict[str, str]) -> None:
        super().__init__(())
        self.scores, self.evidence = scores, evidence
        self.asked: list[list[str]] = []

    def read(self, units, channel):
        self.asked.append(list(units))
        return Reading(self.scores, self.evidence, None, 1.0, dict.fromkeys(self.scores, 0.5))


def _session_with(judge: Judge) -> CoachSession:
    coach = Coach(judge=False)
    return CoachSession("c1", "en", coach.compiled, coach.embedder, judge=JudgeRunner(judge, budget_s=5.0))


def test_a_turn_with_two_needs_carries_two_intents() -> None:
    first = "The invoice for March was taken twice from my account and I want the second one back."
    second = "And while I have you, how do I add my daughter as a second user?"
    spy = _FixedJudge({"refund_request": 0.97, "info_request": 0.9, "complaint": 0.8},
                      {"refund_request": first, "info_request": second, "complaint": first})  # fmt: skip
    out = _session_with(spy).process(_final(f"{first} {second}", channel="customer"))
    assert [e.payload.intent for e in out if e.type == "intent"] == ["refund_request", "info_request"]  # type: ignore[union-attr]


def test_one_need_read_twice_in_the_same_words_is_one_intent() -> None:
    said = "If you put the price up again I'll move all three of our subscriptions elsewhere, and I want it refunded."
    spy = _FixedJudge(
        {"cancel_threat": 0.95, "refund_request": 0.9}, {"cancel_threat": said, "refund_request": said}
    )
    out = _session_with(spy).process(_final(said, channel="customer"))
    assert [e.payload.intent for e in out if e.type == "intent"] == ["cancel_threat"]  # type: ignore[union-attr]


def test_a_turn_cut_at_a_breath_is_also_read_whole() -> None:
    """The detector split the agent's turn at a short pause: the judge reads the two pieces together
    too (a claim spread over the cut), but never across the other speaker's words or a long pause."""
    spy = _FixedJudge({}, {})
    session = _session_with(spy)
    session.process(_final("The pension pot is ring-fenced from the markets.", t=1.0, seg=1))  # ends at 3.0
    session.process(_final("So whatever happens you get it all back.", t=3.8, seg=2))
    assert (
        "The pension pot is ring-fenced from the markets. So whatever happens you get it all back."
        in spy.asked[-1]
    )
    session.process(_final("Is that right?", channel="customer", t=6.0, seg=1))
    session.process(_final("Yes, and the fees are low too.", t=8.5, seg=3))
    assert len(spy.asked[-1]) == 1  # the customer spoke in between: read alone
    session.process(_final("I can send you the details by email.", t=14.0, seg=4))
    assert len(spy.asked[-1]) == 1  # a long pause: a new turn


def test_a_fitted_pack_is_read_back_not_fitted_again_and_an_edit_is_a_new_fit(tmp_path: Path) -> None:
    """The fit cache: the same pack and settings read the weights back (the same reading); an edited
    pack, other settings or a torn file fit again."""
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "small.yaml").write_text(SMALL_PACK, encoding="utf-8")
    categories = load_rules(pack).categories
    panel = load_panel()
    fits = FitCache(tmp_path / "fits")
    settings = JudgeSettings()
    first = fit_judge(categories, panel, settings=settings, fits=fits)
    assert len(list((tmp_path / "fits").glob("*.npz"))) == 1
    again = fit_judge(categories, panel, settings=settings, fits=fits)
    words = ["honestly, you are the thickest person I've spoken to all week"]
    assert again.read(words, "agent").scores == first.read(words, "agent").scores
    assert again.label_names() == first.label_names() == ["abuse"]
    edited = load_rules_from(
        tmp_path / "edited", SMALL_PACK.replace("only a fool would do that", "what a clown")
    )
    fit_judge(edited, panel, settings=settings, fits=fits)
    fit_judge(categories, panel, settings=JudgeSettings(head="ovr"), fits=fits)
    assert len(list((tmp_path / "fits").glob("*.npz"))) == 3
    for path in (tmp_path / "fits").glob("*.npz"):
        path.write_bytes(path.read_bytes()[:100])  # torn: fitted again, never an error
    torn = fit_judge(categories, panel, settings=settings, fits=fits)
    assert torn.read(words, "agent").scores == first.read(words, "agent").scores


def load_rules_from(directory: Path, text: str) -> tuple[Category, ...]:
    directory.mkdir()
    (directory / "small.yaml").write_text(text, encoding="utf-8")
    return load_rules(directory).categories


def test_both_heads_read_the_small_pack(tmp_path: Path) -> None:
    """One label and "none": the softmax head handles the two-class case like the yes/no head."""
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "small.yaml").write_text(SMALL_PACK, encoding="utf-8")
    categories = load_rules(pack).categories
    for head in HEADS:
        judge = fit_judge(
            categories, load_panel(), settings=JudgeSettings(head=head), fits=FitCache(tmp_path / head)
        )
        insult = judge.read(["you're honestly too dim to be let near a phone"], "agent")
        polite = judge.read(["I've sent the confirmation to your email, anything else?"], "agent")
        assert insult.scores["abuse"] > 0.5 > polite.scores["abuse"], (head, insult, polite)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"ASSIST_JUDGE_HEAD": "forest"}, "ASSIST_JUDGE_HEAD"),
        ({"ASSIST_JUDGE_LEXICAL": "lots"}, "ASSIST_JUDGE_LEXICAL"),
        ({"ASSIST_JUDGE_HASH_BITS": "40"}, "ASSIST_JUDGE_HASH_BITS"),
    ],
)
def test_judge_settings_refuse_nonsense(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=problem):
        JudgeSettings.from_env()


def test_judge_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert JudgeSettings.from_env() == JudgeSettings()
    monkeypatch.setenv("ASSIST_JUDGE_HEAD", "ovr")
    monkeypatch.setenv("ASSIST_JUDGE_LEXICAL", "0")
    assert JudgeSettings.from_env() == JudgeSettings(head="ovr", lexical=0.0)


def test_a_mistyped_judge_setting_stops_the_coach_with_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSIST_JUDGE_HEAD", "softmx")
    with pytest.raises(ConfigError, match="ASSIST_JUDGE_HEAD='softmx'"):
        Coach()
