"""Domain rule files of the shipped pack (banking, e-commerce, telecom, insurance, travel, utilities; English
and Chinese): per domain and language, agent sentences that must raise the expected category and honest
agent sentences of that domain that must raise nothing, through the real embedder. The sentences are
written here, not copied from the YAML phrases or exemplars. Each carries the customer's previous turn,
since some rules (investment and insurance claims) need the topic in the recent call."""

from __future__ import annotations

from dataclasses import replace

import pytest

from coach.compiled import CompiledRules
from coach.engine import Coach
from coach.intents import PRIORITY, detect_intents
from coach.matcher import Units, prepare
from coach.rules import DEFAULT_PACK, load_rules
from coach.violations import detect_violations
from coach.window import Utterance, Window
from sidecar.kernel.events import Channel
from sidecar.kernel.text import is_chinese

pytestmark = pytest.mark.model

DOMAINS = ("banking", "ecommerce", "telecom", "insurance", "travel", "utilities")
INTENT_NAMES = {*PRIORITY, "info_request"}


@pytest.fixture(scope="module")
def coach() -> Coach:
    return Coach()


def utterance(text: str, channel: Channel = "agent") -> Utterance:
    return Utterance(channel, text, 10.0, 14.0, 1, True, "zh" if is_chinese(text) else "en")


def read(coach: Coach, text: str, channel: Channel = "agent") -> Units:
    """The words as the live session prepares them: matched units and the judge's reading of the
    whole turn and each of its sentences."""
    units = prepare(text, coach.embedder)
    parts = list(units.sentences)
    assert coach.judge is not None
    return replace(units, reading=coach.judge.read([text, *parts] if len(parts) > 1 else [text], channel))


def findings(coach: Coach, text: str, customer_said: str) -> dict[str, str]:
    """Category → rule id of every violation the agent's ``text`` raises after the customer's turn."""
    rules: CompiledRules = coach.compiled
    window = Window(utterance(text), (utterance(customer_said, "customer"),))
    found = detect_violations(window, rules, read(coach, text))
    return {f.rule.rule.category: f.rule.rule.id for f in found}


# (domain, category, agent sentence, what the customer said just before)
POSITIVES = [
    # banking / wealth
    (
        "banking",
        "misleading_claim",
        "Honestly, this emerging markets bond fund will definitely double your money in five years.",
        "Is my money safe in that bond fund?",
    ),
    (
        "banking",
        "misleading_claim",
        "Bitcoin can only go up in the long run, so a crypto ISA is a no-brainer.",
        "Should I put my savings into crypto?",
    ),
    (
        "banking",
        "misleading_claim",
        "Our managed portfolio is as safe as cash and earns far more.",
        "Is the managed portfolio risky?",
    ),
    (
        "banking",
        "false_promise",
        "Your remortgage is guaranteed to be approved, I've seen hundreds of these.",
        "Will the remortgage go through?",
    ),
    ("banking", "misleading_claim", "这只黄金基金今年肯定涨，错过就可惜了。", "这个基金风险大吗？"),
    ("banking", "misleading_claim", "这款理财产品跟存款一样稳妥，利率还比定期高。", "这个理财安全吗？"),
    ("banking", "false_promise", "您这种情况信用卡包批，额度也保证给您提上去。", "我能办下来这张信用卡吗？"),
    # e-commerce
    (
        "ecommerce",
        "false_promise",
        "The washing machine will turn up on Thursday morning, you have my word.",
        "When will the washing machine come?",
    ),
    (
        "ecommerce",
        "misleading_claim",
        "Our warranty covers everything, cracked screens included.",
        "What does the warranty cover?",
    ),
    (
        "ecommerce",
        "unprofessional",
        "It was delivered, so whatever happened after that is between you and the driver.",
        "My parcel was stolen from the doorstep.",
    ),
    ("ecommerce", "false_promise", "您这单后天肯定到，放心等着就行。", "我的快递什么时候到？"),
    ("ecommerce", "unprofessional", "包裹发出去以后就不归我们管了，你去找快递公司吧。", "包裹丢了怎么办？"),
    ("ecommerce", "misleading_claim", "这款耳机已经是全网最便宜的了，您别犹豫。", "这个价格还会降吗？"),
    # telecom
    (
        "telecom",
        "misleading_claim",
        "Unlimited means unlimited on our network, you will never be throttled.",
        "Is the unlimited plan really unlimited?",
    ),
    (
        "telecom",
        "false_promise",
        "We've replaced the cabinet, so your broadband will never go down again.",
        "My broadband keeps dropping.",
    ),
    (
        "telecom",
        "misleading_claim",
        "There's no roaming charges anywhere you travel, it's all included.",
        "Will I pay extra abroad?",
    ),
    ("telecom", "misleading_claim", "这个不限量套餐无限就是无限，怎么用都不限速。", "这个套餐会限速吗？"),
    ("telecom", "false_promise", "新基站开通以后，您家永远不会掉线了。", "我家网络老是掉线。"),
    ("telecom", "unprofessional", "网不好那是你手机太烂，换个好点的手机吧。", "我家信号一直很差。"),
    # insurance
    (
        "insurance",
        "false_promise",
        "Between you and me, your claim will be paid, the photos are clear enough.",
        "Will my claim be paid?",
    ),
    (
        "insurance",
        "misleading_claim",
        "The policy covers anything that happens to your car, there are no exclusions at all.",
        "What does the car insurance policy exclude?",
    ),
    (
        "insurance",
        "misleading_claim",
        "This premium is only available on this call, so you need to decide now.",
        "Can I think about the insurance quote?",
    ),
    (
        "insurance",
        "privacy_leak",
        "To process the phone claim I'll need your complete medical history, every illness you've had.",
        "I want to claim for my cracked phone screen.",
    ),
    (
        "insurance",
        "false_promise",
        "您这个住院的情况，保险公司百分百给您全额赔付。",
        "我住院了，保险能赔吗？",
    ),
    ("insurance", "misleading_claim", "我们这款重疾险什么都能赔，您完全不用担心。", "这个保险保什么？"),
    ("insurance", "misleading_claim", "这个产品今天必须签，明天就停售了。", "我想再考虑一下这个保险。"),
    ("insurance", "privacy_leak", "您把全部病史都说一下，吃过的所有药也报给我。", "我想报销一下门诊费。"),
    # travel
    (
        "travel",
        "false_promise",
        "As a platinum member you'll definitely get upgraded to first class.",
        "Any chance of an upgrade?",
    ),
    (
        "travel",
        "false_promise",
        "The ferry is guaranteed to leave on time, so there's no chance of a delay tomorrow.",
        "Will the ferry be delayed?",
    ),
    (
        "travel",
        "false_promise",
        "Book it now, the money comes back to you whatever happens.",
        "What if I have to cancel the trip?",
    ),
    (
        "travel",
        "privacy_leak",
        "Let me read that back, your passport number is 8 0 2 4 4 7 3 1 9.",
        "I gave you my passport number earlier.",
    ),
    ("travel", "false_promise", "这趟高铁绝对准点，肯定赶得上您转机。", "高铁会晚点吗？"),
    ("travel", "false_promise", "无论出了什么事，我们都全额退给您。", "如果行程有变能退吗？"),
    ("travel", "privacy_leak", "我再念一遍，您的护照号码是G 3 8 1 6 4 9 2 7。", "我的护照信息登记好了吗？"),
    # utilities
    (
        "utilities",
        "false_promise",
        "Stay with us and your bills will never go up, simple as that.",
        "Will my bill go up next year?",
    ),
    (
        "utilities",
        "misleading_claim",
        "This tariff locks your price in forever, you'll never face a rise.",
        "How long is the price fixed?",
    ),
    (
        "utilities",
        "unprofessional",
        "Pay the balance today or we will cut off your electricity tomorrow.",
        "I can't pay the whole bill right now.",
    ),
    (
        "utilities",
        "unprofessional",
        "That's not our meter, so that's your problem, ring the network operator yourself.",
        "My meter is faulty.",
    ),
    ("utilities", "false_promise", "放心，以后电费绝对不会涨价。", "明年电费会涨吗？"),
    ("utilities", "unprofessional", "欠费不交就停，你自己看着办。", "我这个月手头紧，能晚点交吗？"),
    ("utilities", "unprofessional", "那个表不是我们的，你自己找物业去问。", "我家电表好像坏了。"),
    (
        "utilities",
        "misleading_claim",
        "签了这份合同价格终身锁定，永远不用担心涨价。",
        "合同的价格能保持多久？",
    ),
]

# (domain, honest agent sentence, what the customer said just before): must raise nothing
NEGATIVES = [
    (
        "banking",
        "The bond fund pays a variable income and the value of your investment can fall.",
        "Is my money safe in that bond fund?",
    ),
    (
        "banking",
        "Crypto is high risk and we don't offer it, a cash ISA is covered by the FSCS.",
        "Should I put my savings into crypto?",
    ),
    (
        "banking",
        "I'll send your remortgage application to the underwriters, and they'll decide within a week.",
        "Will the remortgage go through?",
    ),
    ("banking", "这款产品不保本，净值会随市场波动，请您谨慎考虑。", "这个基金风险大吗？"),
    ("banking", "信用卡能否办下来以审批结果为准，一般七个工作日出结果。", "我能办下来这张信用卡吗？"),
    ("banking", "理财产品不是存款，过往收益不代表未来，您可以先看看产品说明书。", "这个理财安全吗？"),
    (
        "ecommerce",
        "The tracking says Thursday, and I'll chase the carrier for you if it slips.",
        "When will the washing machine come?",
    ),
    (
        "ecommerce",
        "The warranty covers faults for two years but not accidental damage like a cracked screen.",
        "What does the warranty cover?",
    ),
    (
        "ecommerce",
        "I'm sorry, I'll open a missing parcel investigation with the courier for you today.",
        "My parcel was stolen from the doorstep.",
    ),
    ("ecommerce", "物流显示预计后天送达，具体以快递实际派送为准。", "我的快递什么时候到？"),
    ("ecommerce", "我这边马上联系快递核实，今天给您回复处理结果。", "包裹丢了怎么办？"),
    ("ecommerce", "人为摔坏不在保修范围内，但我可以帮您安排付费维修。", "摔坏了能保修吗？"),
    (
        "telecom",
        "The unlimited plan has a fair use policy, and speeds can be managed at peak times.",
        "Is the unlimited plan really unlimited?",
    ),
    (
        "telecom",
        "The engineer replaced the faulty cabinet, if it drops again call us and we'll send someone out.",
        "My broadband keeps dropping.",
    ),
    (
        "telecom",
        "Roaming in Europe is included, elsewhere there's a daily charge, let me check your destination.",
        "Will I pay extra abroad?",
    ),
    ("telecom", "这个套餐每月四十G高速流量，超出以后会降速。", "这个套餐会限速吗？"),
    ("telecom", "故障已经修好了，如果再掉线请随时联系我们。", "我家网络老是掉线。"),
    ("telecom", "国际漫游要看目的地，我帮您查一下您去的国家怎么收费。", "出国用手机要钱吗？"),
    (
        "insurance",
        "The loss adjuster will look at the photos, and if the damage is covered we'll settle the claim.",
        "Will my claim be paid?",
    ),
    (
        "insurance",
        "The car policy doesn't cover wear and tear, and the full list of exclusions is in the policy booklet.",
        "What does the car insurance policy exclude?",
    ),
    (
        "insurance",
        "Take your time, the quote stays valid for thirty days.",
        "Can I think about the insurance quote?",
    ),
    (
        "insurance",
        "For the screen claim I only need the repair invoice and a photo of the damage.",
        "I want to claim for my cracked phone screen.",
    ),
    ("insurance", "能不能赔、赔多少要以核赔结果为准，我先帮您登记报案。", "我住院了，保险能赔吗？"),
    ("insurance", "这款保险有责任免除条款，具体请您看合同第七条。", "这个保险保什么？"),
    ("insurance", "您不用着急，投保后还有十五天犹豫期。", "我想再考虑一下这个保险。"),
    (
        "travel",
        "Upgrades depend on availability at the gate, but I've added a request to your booking.",
        "Any chance of an upgrade?",
    ),
    (
        "travel",
        "The ferry is showing on schedule right now, and we'll text you if anything changes.",
        "Will the ferry be delayed?",
    ),
    (
        "travel",
        "This fare is non-refundable, but travel insurance may cover you if you have to cancel.",
        "What if I have to cancel the trip?",
    ),
    (
        "travel",
        "Could you read me the last three digits on your passport so I can check the booking?",
        "I gave you my passport number earlier.",
    ),
    ("travel", "列车目前显示正点，如有晚点会短信提醒您。", "高铁会晚点吗？"),
    ("travel", "这个订单出行前二十四小时取消可以全额退款，之后按规则收费。", "如果行程有变能退吗？"),
    ("travel", "商务舱目前已满，我可以帮您加入候补名单。", "能升舱吗？"),
    (
        "utilities",
        "Your unit rates are fixed for eighteen months, after that the standard variable rate applies.",
        "How long is the price fixed?",
    ),
    (
        "utilities",
        "We can set up a payment plan, and we'll never cut off a customer who's keeping to one.",
        "I can't pay the whole bill right now.",
    ),
    (
        "utilities",
        "The meter belongs to the network operator, so I'll book their engineer and give you a reference.",
        "My meter is faulty.",
    ),
    ("utilities", "电价按阶梯计费，明年如果调价会提前公告。", "明年电费会涨吗？"),
    ("utilities", "您可以先交一部分，剩下的我帮您申请缓缴。", "我这个月手头紧，能晚点交吗？"),
    ("utilities", "电表归供电公司管，我帮您派单安排师傅上门检查。", "我家电表好像坏了。"),
]

# (domain, customer sentence, primary intent)
INTENTS = [
    ("insurance", "You rejected my claim after I paid premiums for ten years.", "complaint"),
    ("banking", "If this isn't sorted I'm going to the financial ombudsman.", "escalation_request"),
    ("banking", "I'm switching banks, this is the last straw.", "cancel_threat"),
    ("ecommerce", "You sent me the wrong size and the box had been opened.", "complaint"),
    ("ecommerce", "I'll never shop with you again after this.", "cancel_threat"),
    ("telecom", "Just give me my PAC code please.", "cancel_threat"),
    ("telecom", "My calls keep dropping every evening.", "complaint"),
    ("travel", "The airline lost my luggage and nobody will tell me anything.", "complaint"),
    ("travel", "I'm never flying with you again.", "cancel_threat"),
    ("utilities", "We've had estimated bills for six months.", "complaint"),
    ("utilities", "I'll be reporting this to Ofgem.", "escalation_request"),
    ("insurance", "理赔被拒了，凭什么不给赔？", "complaint"),
    ("insurance", "我要退保，这保险不买了。", "cancel_threat"),
    ("ecommerce", "你们发错货了，我买的是黑色的。", "complaint"),
    ("ecommerce", "我要打12315投诉你们。", "escalation_request"),
    ("telecom", "再不处理我就去工信部申诉。", "escalation_request"),
    ("travel", "我要去民航局投诉。", "escalation_request"),
    ("utilities", "这个月电费怎么这么高，翻了一倍。", "complaint"),
]


def _id(case: tuple[str, ...]) -> str:
    return f"{case[0]}-{'zh' if is_chinese(case[-2] if len(case) == 4 else case[1]) else 'en'}"


@pytest.mark.parametrize(
    ("domain", "category", "text", "customer_said"), POSITIVES, ids=[_id(c) for c in POSITIVES]
)
def test_domain_positives(coach: Coach, domain: str, category: str, text: str, customer_said: str) -> None:
    found = findings(coach, text, customer_said)
    assert category in found, found


@pytest.mark.parametrize(("domain", "text", "customer_said"), NEGATIVES, ids=[_id(c) for c in NEGATIVES])
def test_domain_hard_negatives(coach: Coach, domain: str, text: str, customer_said: str) -> None:
    assert findings(coach, text, customer_said) == {}


def test_every_domain_and_language_is_exercised() -> None:
    for domain in DOMAINS:
        for lang in ("en", "zh"):

            def mine(text: str, lang: str = lang) -> bool:
                return is_chinese(text) == (lang == "zh")

            assert sum(1 for d, _, t, _ in POSITIVES if d == domain and mine(t)) >= 2, (domain, lang)
            assert sum(1 for d, t, _ in NEGATIVES if d == domain and mine(t)) >= 2, (domain, lang)


def test_customer_repeating_a_claim_is_not_an_agent_violation(coach: Coach) -> None:
    for text in ("So you're saying my bill will never go up?", "你是说电费永远不会涨价？"):
        utt = utterance(text, "customer")
        assert detect_violations(Window(utt, ()), coach.compiled, read(coach, text)) == []


@pytest.mark.parametrize(("domain", "text", "intent"), INTENTS, ids=[f"{d}-{i}" for d, _, i in INTENTS])
def test_domain_intents(coach: Coach, domain: str, text: str, intent: str) -> None:
    utt = utterance(text, "customer")
    found = detect_intents(Window(utt, ()), coach.compiled, read(coach, text, "customer"))
    assert [f.rule.rule.intent for f in found] == [intent]


@pytest.mark.parametrize(
    "text",
    [
        "I'd like to book a flight to Madrid next month.",
        "Yes, the policy number is on the letter.",
        "我想查一下这个月的电费。",
        "好的，那我等短信。",
    ],
)
def test_no_domain_intent_in_plain_requests(coach: Coach, text: str) -> None:
    utt = utterance(text, "customer")
    found = detect_intents(Window(utt, ()), coach.compiled, read(coach, text, "customer"))
    assert [f.rule.rule.intent for f in found if f.rule.rule.intent != "info_request"] == []


def test_domain_files_are_complete() -> None:
    rules = load_rules(DEFAULT_PACK)
    for domain in DOMAINS:
        for lang in ("en", "zh"):
            name = f"{domain}.{lang}.yaml"
            assert name in rules.versions, name
            mine = [r for r in rules.rules if r.source.startswith(name + ":")]
            assert 4 <= len(mine) <= 8, (name, len(mine))
            for rule in mine:
                assert rule.id.startswith(domain + "."), rule.id
                assert rule.lang == lang, rule.id
                assert rule.channel == "agent", rule.id
            for intent in (i for i in rules.intents if i.source.startswith(name + ":")):
                assert intent.id.startswith(domain + "."), intent.id
                assert intent.intent in INTENT_NAMES, intent.id
                assert intent.channel == "customer", intent.id
