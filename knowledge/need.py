"""Does this customer turn ask for anything a procedure could answer?

Much of what a customer says on a service call is not a need: answers to the agent's questions
(name, date of birth, postcode, the last digits of a card), acknowledgements ("yes please",
"perfect"), checking the line ("hello? are you still there?") and closings ("no, that's all,
thanks"). Retrieval on those turns finds *some* procedure — usually the one the call is already
about, or one that shares a word with a postcode — and pushes noise. These are conversation acts
of any contact centre, whatever its domain, so the cues below are about how people talk, not
about any product. A turn with a question in it is always a need.
"""

from __future__ import annotations

import re

from sidecar.kernel.text import is_chinese

_QUESTION = re.compile(r"[?？]")
_CLOSING = re.compile(
    r"\b(that'?s (all|it|everything)|that is all|nothing else|no,? thanks?|thanks?|thank you|cheers|bye|goodbye|"
    r"i'?ll (pass|think about it))\b",
    re.IGNORECASE,
)
_LINE_CHECK = re.compile(
    r"\bhello\s*\?|\b(are you (still|even) (there|with me|looking)|(is )?any(one|body) there|did i lose you|"
    r"still there|can you hear me)\b",
    re.IGNORECASE,
)
# the agent asked for details that identify the caller or the case
_ASKS_DETAILS = re.compile(
    r"\b(your (full )?name|date of birth|birthday|post ?code|zip( code)?|last (four|4)|security question|"
    r"(your|the) (e-?mail|address|phone number|account number|order number|card number|reference))\b",
    re.IGNORECASE,
)
_DETAIL = re.compile(
    r"\d|\b(first|second|third|fourth|fifth|\w+teenth|\w+tieth|twenty|thirty|dot com|at \w+ dot)\b",
    re.IGNORECASE,
)
_ZH_CLOSING = re.compile(r"^(没了|没有了|没有|好的|好|行|谢谢|嗯|对|可以)[，。！,.!\s]*(.{0,8})$")
_ZH_DETAILS = re.compile(r"(我叫|后四位|尾号|身份证号?|出生|手机号|订单号)")
_ZH_LINE_CHECK = re.compile(r"^(喂|你好)[？?，,。\s]*(还在吗|在吗|听得到吗)?[？?。\s]*$")

SHORT_WORDS = 4  # "Yes please, do both." — an acknowledgement, unless it asks something ...
# ... or names something: "I want a refund." and "My card was stolen." are needs. A short turn is
# an acknowledgement when every word in it is one of these (agreement, thanks, fillers).
_ACK_TEXT = (
    "yes yeah yep yup no nope nah ok okay alright right sure fine good great perfect lovely brilliant "
    "excellent cool wonderful understood got it that that's thats is all it's its thanks thank you cheers "
    "please do both go ahead sounds to me hear see i i'll i'm will would works one sorry hmm um uh mm oh "
    "ah and so well then true agreed correct exactly indeed absolutely definitely"
)
_ACK_WORDS = frozenset(_ACK_TEXT.split())
_WORD = re.compile(r"[a-z']+")
CLOSING_REST = 6  # "No, that's all, thanks for sorting the card." — little besides the closing


def states_a_need(text: str, agent_said: str = "") -> bool:
    """False for answers, acknowledgements, line checks and closings; True otherwise."""
    text = text.strip()
    if not text:
        return False
    asks = bool(_QUESTION.search(text))
    if is_chinese(text):
        if _ZH_LINE_CHECK.match(text):
            return False
        if asks:
            return True
        return not (_ZH_CLOSING.match(text) or _ZH_DETAILS.search(text))
    words = len(text.split())
    if _LINE_CHECK.search(text) and words <= 8:
        return False
    if asks:
        return True
    if words <= SHORT_WORDS and set(_WORD.findall(text.lower().replace("’", "'"))) <= _ACK_WORDS:
        return False
    if _CLOSING.search(text) and len(_CLOSING.sub(" ", text).split()) <= CLOSING_REST:
        return False
    return not (_ASKS_DETAILS.search(agent_said) and _DETAIL.search(text))
