"""Detectors, one table each: positives (paraphrases written here, not the dev set's sentences) and
hard negatives, English and Chinese, through the shipped rule pack and the real embedder."""

from __future__ import annotations

import pytest

from coach.compiled import CompiledRules
from coach.engine import Coach
from coach.intents import detect_intents
from coach.matcher import prepare
from coach.violations import detect_violations
from coach.window import Utterance, Window
from sidecar.kernel.events import Channel

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def coach() -> Coach:
    return Coach()


def utterance(text: str, channel: Channel = "agent", lang: str | None = None) -> Utterance:
    from sidecar.kernel.text import is_chinese

    return Utterance(channel, text, 10.0, 14.0, 1, True, lang or ("zh" if is_chinese(text) else "en"))


def violations(coach: Coach, text: str, history: tuple[str, ...] = ()) -> set[str]:
    rules: CompiledRules = coach.compiled
    past = tuple(utterance(t, "customer") for t in history)
    utt = utterance(text)
    units = prepare(text, coach.embedder)
    return {f.rule.rule.category for f in detect_violations(Window(utt, past), rules, units)}


POSITIVES = [
    ("abuse", "Are you daft? I've explained it three times already."),
    ("abuse", "Honestly, only an idiot would lose a card twice in a week."),
    ("abuse", "你脑子是不是有问题？我说得很清楚了。"),
    ("discrimination", "People your age always struggle with online banking, maybe ask your kids."),
    ("discrimination", "Your kind always call in with some sob story."),
    ("discrimination", "你们农村人就是不懂这些规矩。"),
    ("privacy_leak", "To speed things up, just tell me your online banking password."),
    ("privacy_leak", "Your card number is 4 9 1 6 3 3 8 2 1 0 5 5 7 2 0 4, correct?"),
    ("privacy_leak", "请把短信里的验证码告诉我，我帮您操作。"),
    ("false_promise", "I guarantee the engineer will be there before noon tomorrow."),
    ("false_promise", "I promise your claim will be approved this week."),
    ("false_promise", "我向您保证，这个月之内一定给您退回来。"),
    ("misleading_claim", "This pension fund is risk free and pays a guaranteed eight percent a year."),
    ("misleading_claim", "You can't lose with this bond, your capital is fully protected."),
    ("misleading_claim", "这个基金稳赚不赔，您放心投。"),
    ("unprofessional", "Look, that's not my problem, you should have read the small print."),
    ("unprofessional", "Calm down, shouting won't get you anywhere."),
    ("unprofessional", "这是你自己的问题，跟我们没关系。"),
]

NEGATIVES = [
    "I can't guarantee a date, but I will chase the courier today.",
    "I'm not able to promise a time, the engineers usually finish within two days.",
    "That's the card ending in 4 4 1 2, is that right?",
    "There is some risk, as with any investment, and the value can go down as well as up.",
    "Please never share your PIN or password with anyone, including us.",
    "I'll put you on a short hold while I check that with the warehouse.",
    "I understand this is frustrating, let me see what I can do.",
    "There's no risk of a second charge, the first one was cancelled.",
    "Thanks for your patience, is there anything else I can help you with?",
    "具体到账时间我没办法向您保证，一般三到五个工作日。",
    "理财非存款，产品有风险，投资须谨慎。",
    "请不要把验证码告诉任何人，包括我们的客服。",
    "您好，请问有什么可以帮您？",
]


@pytest.mark.parametrize(("category", "text"), POSITIVES)
def test_violation_positives(coach: Coach, category: str, text: str) -> None:
    history = ("I was thinking of investing some savings.",) if category == "misleading_claim" else ()
    assert category in violations(coach, text, history)


@pytest.mark.parametrize("text", NEGATIVES)
def test_violation_hard_negatives(coach: Coach, text: str) -> None:
    assert violations(coach, text, ("Do I need to worry about anything?",)) == set()


def test_customer_swearing_at_the_situation_is_not_a_violation(coach: Coach) -> None:
    utt = utterance("This bloody parcel is a damn joke, I'm sick of it.", "customer")
    units = prepare(utt.text, coach.embedder)
    assert detect_violations(Window(utt, ()), coach.compiled, units) == []


INTENTS = [
    ("refund_request", "I'd like my money back for the broken kettle."),
    ("refund_request", "Can you knock something off the bill for the outage?"),
    ("refund_request", "我要退款，这东西根本不能用。"),
    ("complaint", "This is unacceptable, the package arrived smashed."),
    ("complaint", "你们的网络太差了，天天掉线。"),
    ("cancel_threat", "If this happens again I'm switching to another provider."),
    ("cancel_threat", "再这样我就销户了。"),
    ("escalation_request", "I want to speak to your supervisor, please."),
    ("escalation_request", "我要找你们经理投诉。"),
    ("implicit_complaint", "Two weeks late, brilliant, just brilliant."),
    ("implicit_complaint", "等了半个月，你们效率真高啊。"),
    ("info_request", "How long does a replacement card take to arrive?"),
]


@pytest.mark.parametrize(("intent", "text"), INTENTS)
def test_intents(coach: Coach, intent: str, text: str) -> None:
    utt = utterance(text, "customer")
    found = detect_intents(Window(utt, ()), coach.compiled, prepare(text, coach.embedder))
    assert [f.rule.rule.intent for f in found] == [intent]


@pytest.mark.parametrize(
    "text", ["Okay, thanks, that's everything.", "Yes, that's my address.", "好的，谢谢。", "没有了。"]
)
def test_no_intent_in_plain_answers(coach: Coach, text: str) -> None:
    utt = utterance(text, "customer")
    found = detect_intents(Window(utt, ()), coach.compiled, prepare(text, coach.embedder))
    assert [f.rule.rule.intent for f in found if f.rule.rule.intent != "info_request"] == []


@pytest.mark.parametrize(
    "text",
    [
        "I'll definitely pass your feedback on to the team.",
        "I'll call you back by five, I promise.",
        "Okay, I've cancelled the order and you won't be charged.",
        "我一定会把您的意见反馈给相关部门。",
        "您放心，我一定会帮您跟进到底。",
    ],
)
def test_promises_about_our_own_actions_are_fine(coach: Coach, text: str) -> None:
    assert violations(coach, text) == set()
