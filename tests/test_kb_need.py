"""Which customer turns state a need (retrieval runs on those only): conversation acts, any domain."""

from __future__ import annotations

import pytest

from knowledge.need import states_a_need

ASKS_DETAILS = "Could you confirm your full name, date of birth and the postcode on the account?"


@pytest.mark.parametrize(
    ("text", "agent_said"),
    [
        ("Hi, my boiler stopped working this morning and the house is freezing.", ""),
        ("Hello, I'd like a refund for my order.", ""),
        ("Why was I charged twice for the same flight?", ""),
        ("Thanks, and I also need to change the address on my policy please.", ""),
        # a question is a need even when it answers the agent
        ("Do you really need all that? Fine, Rosa Delgado, 17th of August 1983.", ASKS_DETAILS),
        # digits in the opening turn are not an answer to a verification question
        ("Hi, I paid 25 dollars for a bag that never arrived.", "Thanks for calling, my name is Dana."),
        # short, but it names something
        ("I want a refund.", ""),
        ("My card was stolen.", ""),
        ("Cancel my subscription.", "Anything else I can help with?"),
        ("你好，我想退款。", ""),
        ("我的行李到现在还没到，怎么办？", ""),
    ],
)
def test_needs(text: str, agent_said: str) -> None:
    assert states_a_need(text, agent_said)


@pytest.mark.parametrize(
    ("text", "agent_said"),
    [
        ("Nina Petrova, twenty first of October 1990, card ending 7 3 0 8.", ASKS_DETAILS),
        ("Sure, it's mark dot ellis at mailbox dot com, zip code 6 0 6 1 4.", "And your email and zip code?"),
        ("Yes please, do both.", "Shall I refund the fee and set up an alert?"),
        ("Understood, that's fine.", ""),
        ("Okay, good to hear.", ""),
        ("Perfect.", ""),
        ("No, that's all, thanks for sorting the card.", "Anything else I can help with?"),
        ("Thank you. I'll be expecting that call.", ""),
        ("Hello? Are you still there?", ""),
        ("Hello? Did I lose you?", ""),
        ("", ""),
        ("没有了，谢谢。", ""),
        ("喂？还在吗？", ""),
        ("王芳，身份证后四位是二七六八。", "请提供您的姓名和身份证后四位。"),
    ],
)
def test_not_needs(text: str, agent_said: str) -> None:
    assert not states_a_need(text, agent_said)
