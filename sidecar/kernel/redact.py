"""PII redaction for every transcript and evidence string before it is emitted, stored or logged.

Transcripts come from speech recognition, so numbers are often spoken rather than written: digit groups
separated by spaces, number words ("four five", "oh" for zero, "double seven", "forty five"), Chinese
numerals (一二三…, 两, 幺) and emails read out as "mark dot ellis at mailbox dot com". Detection works in
three layers:

1. *Secrets*: the value after a trigger ("password is", "PIN is", "verification code", "验证码是", "密码是")
   is a password or a one-time code, whatever its length.
2. *Emails*: written (``a.b@c.com``) and spoken (``… at … dot com``, ``…艾特…点com``).
3. *Digit runs*: number units (written digits, number words, Chinese numerals) joined across spaces,
   hyphens, commas, dots and brackets, classified by the context words just before the run (account,
   card, phone, ID, reference numbers) and by their length and shape (13+ digits: card; 18 with a valid
   birth date or a trailing X: Chinese ID; 10-12: phone; ddd-dd-dddd: SSN).

Short runs (under six digits) are never redacted unless a secret trigger precedes them, so "card ending
in 4 4 1 2", postcodes, amounts, years and short reference numbers stay readable.

Six to nine digits read one at a time ("4 8 2 9 1 3", "four eight two nine one three", "四八二九一三")
with no context word are a one-time code even without a trigger; counting ("1 2 3 4 5 6") is not.
A number read across two utterances of one speaker is the work of ``coach.redact_stream``.

Detection is language-agnostic (calls switch languages); ``lang`` is accepted for API stability.
Everything is precompiled; one sentence takes well under a millisecond.
"""

from __future__ import annotations

import re
from bisect import bisect_right, insort
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

PiiKind = Literal["card", "national_id", "phone", "email", "account", "password", "otp"]

__all__ = [
    "PiiKind",
    "PiiSpan",
    "find_pii",
    "placeholder",
    "redact",
    "redact_tokens",
    "replace_in_text",
    "replace_in_tokens",
]

Cut = tuple[int, int, str]  # a replacement: char offsets into a text and what goes there


@dataclass(frozen=True, slots=True)
class PiiSpan:
    """One piece of PII: its kind, char offsets into the input text and its normalised digits."""

    kind: PiiKind
    start: int
    end: int
    digits: str  # normalised digits (a Chinese ID may end with "X"); "" for email and password


# --------------------------------------------------------------------------------------------- numbers

_WORD_DIGITS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "nought": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_TENS = {
    "twenty": "2",
    "thirty": "3",
    "forty": "4",
    "fourty": "4",
    "fifty": "5",
    "sixty": "6",
    "seventy": "7",
    "eighty": "8",
    "ninety": "9",
}
_TEENS = {
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
}
_ZH_DIGITS = {
    "零": "0",
    "〇": "0",
    "一": "1",
    "幺": "1",
    "二": "2",
    "两": "2",
    "三": "3",
    "四": "4",
    "五": "5",
    "六": "6",
    "七": "7",
    "八": "8",
    "九": "9",
}
_FULLWIDTH = str.maketrans("０１２３４５６７８９", "0123456789")

_DW = "|".join(sorted(_WORD_DIGITS, key=len, reverse=True))
_UNIT_WORDS = "one|two|three|four|five|six|seven|eight|nine"
# A placeholder next to a unit counts as a letter would: redacting must not create new units.
_NO_PLACEHOLDER_BEFORE = r"(?<!\[phone\])(?<!\[email\])(?<!\[otp\])(?<!\[password\])(?<!••[0-9A-Za-z]{4}\])"
_NO_PLACEHOLDER_AFTER = r"(?!\[(?:card|id|account|phone|email|password|otp)[\] ])"
_NOT_WORD_BEFORE = r"(?<![A-Za-z'’])" + _NO_PLACEHOLDER_BEFORE
_NOT_WORD_AFTER = r"(?![A-Za-z'’])" + _NO_PLACEHOLDER_AFTER

# One "number unit": a written digit group, a number word (or double/triple/tens/teens), or a run of
# Chinese numerals. Written digits glued to letters ("3rd", "TK5582", "tiger123") are not units, and
# neither are the digits of a placeholder ("••••2247").
_UNIT_RE = re.compile(
    rf"""
    (?P<ascii>(?<![A-Za-z0-9０-９_•]){_NO_PLACEHOLDER_BEFORE}[0-9０-９]+(?![A-Za-z0-9０-９_]){_NO_PLACEHOLDER_AFTER})
    |(?P<xid>(?<![A-Za-z0-9０-９_•]){_NO_PLACEHOLDER_BEFORE}[0-9０-９]{{1,17}}[Xx](?![A-Za-z0-9０-９_]))
    |(?P<rep>{_NOT_WORD_BEFORE}(?:double|triple)[\s-]+(?:{_DW}|[0-9])(?![A-Za-z0-9'’]){_NO_PLACEHOLDER_AFTER})
    |(?P<tens>{_NOT_WORD_BEFORE}(?:{"|".join(_TENS)})(?:[\s-]+(?:{_UNIT_WORDS}))?{_NOT_WORD_AFTER})
    |(?P<teen>{_NOT_WORD_BEFORE}(?:{"|".join(_TEENS)}){_NOT_WORD_AFTER})
    |(?P<word>{_NOT_WORD_BEFORE}(?:{_DW}){_NOT_WORD_AFTER})
    |(?P<zh>[零〇一二三四五六七八九两幺]+)
    """,
    re.IGNORECASE | re.VERBOSE,
)
_SPLIT_RE = re.compile(r"[\s-]+")
# What may separate the units of one run: spaces, hyphens/dashes, commas, dots, slashes, brackets.
_GAP_RE = re.compile(r"[\s\u3000,，、\-–—./()]{0,4}")
_X_SUFFIX_RE = re.compile(r"[ \t]?[Xx](?![A-Za-z0-9])")
# A code read digit by digit: single digits (written or spoken) apart, or Chinese numerals one per digit.
_SPACED_SEP_RE = re.compile(r"[\s\u3000,，、\-–—]+")
_SINGLE_DIGIT_RE = re.compile(rf"(?:[0-9０-９]|{_DW})", re.IGNORECASE)
_ZH_DIGITS_RE = re.compile(r"[零〇一二三四五六七八九两幺]+")
_PLUS_RE = re.compile(r"(?:\+|(?<![A-Za-z])plus\s)\s*\Z", re.IGNORECASE)

# Guards: amounts, decimals, dates and lists of years are not PII.
_AMOUNT_RAW_RE = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+\.[0-9]+")
_DATE_RAW_RE = re.compile(
    r"[0-9]{4}[-/.][0-9]{1,2}[-/.][0-9]{1,2}|[0-9]{1,2}[-/.][0-9]{1,2}[-/.](?:[0-9]{4}|[0-9]{2})"
)
_YEAR_LIST_RE = re.compile(r"(?:19|20)[0-9]{2}(?:,\s*(?:19|20)[0-9]{2})+")
_SSN_RAW_RE = re.compile(r"[0-9]{3}-[0-9]{2}-[0-9]{4}")
_CURRENCY_BEFORE_RE = re.compile(r"(?:[$£€¥￥]|(?<![A-Za-z])(?:usd|rmb|gbp|eur|cny))\s*\Z", re.IGNORECASE)
_AFTER_AMOUNT_RE = re.compile(
    r"\s*(?:(?:dollars?|bucks|pounds?|quid|euros?|yuan|rmb|kuai|cents?|pence|percent|per\s?cent|grand|k|"
    r"usd|gbp|eur)(?![A-Za-z])|[%元块美欧英毛角万千百亿])",
    re.IGNORECASE,
)
# After a secret trigger, "8 characters" describes the password instead of being it.
_COUNT_AFTER_RE = re.compile(
    r"\s*(?:(?:characters?|chars|digits?|letters?|numbers?|symbols?|times|attempts?|tries)(?![A-Za-z])|[位个次])",
    re.IGNORECASE,
)

# ---------------------------------------------------------------------------------------------- context

_EN_SUFFIX = r"(?:\s+(?:number|num|no\.?|code|id))?(?:\s+(?:is|was))?"
_CTX_RE = re.compile(
    rf"""
    (?P<ref>(?<![A-Za-z])(?:
        (?:order|ticket|case|reference|ref|tracking|confirmation|invoice|booking|claim|policy|reservation
          |flight|serial|receipt|incident|complaint|parcel|shipment){_EN_SUFFIX}
        |(?:customer|user|employee|member|membership|product|item|model|transaction|session|account)\s+id
          (?:\s+(?:is|was))?
        |(?:customer|user|employee|member|membership|product|item|model|transaction|session)
          \s+(?:number|num|no\.?|code)(?:\s+(?:is|was))?
        |(?:zip|postal|post|area|promo|discount|voucher|coupon|country|dialling|dialing)\s*code(?:\s+(?:is|was))?
        |postcode(?:\s+(?:is|was))?
      )(?![A-Za-z])
      |(?:订单号?|工单号?|单号|快递单?号?|运单号?|流水号|编号|邮编|邮政编码|工号|会员号|尾号|后[四六]位|前[四六]位
          |票号|航班号?|车牌号?)码?(?:是|为)?)
    |(?P<amount>(?<![A-Za-z])(?:balance|amount|total|limit|fees?|price|costs?|payment|paid|pay|owed?|charged?
        |refund(?:ed)?|salary|income|worth)(?:\s+(?:is|was|of))?(?![A-Za-z])
      |(?:余额|金额|额度|总共|一共|费用|工资)(?:是|为|有)?)
    |(?P<id>(?<![A-Za-z])(?:
        social\s+security(?:\s+(?:number|no\.?|card))?|ssn
        |national\s+(?:id|insurance|identity)(?:\s+(?:card|number|no\.?))?
        |identity(?:\s+(?:card|number|document))?|id(?:\s+(?:number|card|no\.?))?
        |passport(?:\s+number)?|driver'?s?\s+licen[cs]e(?:\s+number)?
      )(?:\s+(?:is|was))?(?![A-Za-z])
      |身份证(?:号码|号)?(?:是|为)?|证件号码?(?:是|为)?|身份号码?(?:是|为)?)
    |(?P<cardno>(?:银行卡号|信用卡号|借记卡号|卡号)码?(?:是|为)?)
    |(?P<card>(?<![A-Za-z])(?:credit|debit|card|visa|master\s?card|amex|american\s+express|discover)
        (?:\s+(?:card|number|num|no\.?))?(?:\s+(?:is|was))?(?![A-Za-z])
      |银行卡|信用卡|借记卡|储蓄卡)
    |(?P<account>(?<![A-Za-z])(?:account|acct|iban|sort\s*code|routing|bsb)(?:\s+(?:number|num|no\.?))?
        (?:\s+(?:is|was))?(?![A-Za-z])
      |(?:账号|账户|帐号|帐户)(?:是|为)?)
    |(?P<phone>(?<![A-Za-z])(?:
        phone|mobile|cell|cellphone|telephone|landline|whatsapp|fax|contact\s+number
        |(?:call|reach|text|ring)\s+(?:me|us|him|her)(?:\s+(?:back|at|on))*
      )(?:\s+(?:number|num|no\.?))?(?:\s+(?:is|was))?(?![A-Za-z])
      |(?:手机号码|手机号|手机|电话号码|电话|联系方式|座机|微信号|微信)(?:是|为)?)
    |(?P<weak>(?<![A-Za-z])number(?:\s+(?:is|was))?(?![A-Za-z])|号码(?:是|为)?)
    """,
    re.IGNORECASE | re.VERBOSE,
)
_STRONG_CONTEXTS = frozenset({"id", "cardno", "card", "account", "phone"})
_CTX_TOKEN_RE = re.compile(r"[A-Za-z][A-Za-z'’\-]*|[\u3400-\u9fff]|[0-9]+")
_FILLER_WORDS = frozenset({"uh", "um", "er", "erm", "ah", "hmm", "mm", "uhm"})
_WINDOW_WEIGHT = 5.0  # about five English words, or twelve Chinese characters, before a run
_CJK_WEIGHT = 0.4

_PLACEHOLDER_RE = re.compile(r"\[(?:card|id|account) ••••[0-9A-Za-z]{0,4}\]|\[(?:phone|email|password|otp)\]")

# ---------------------------------------------------------------------------------------------- secrets


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_IS = r"(?P<is>\s*(?:(?:is|was|would\s+be|should\s+be)(?![A-Za-z])|['’]s(?![A-Za-z])|[:：=]))?"
_ZH_IS = r"(?P<zis>\s*(?:是|为|[:：]))?"
_PASSWORD_RE = re.compile(
    rf"""
    (?<![A-Za-z])(?:pass\s?word|pass\s?code|pin(?:\s+(?:number|code))?|cvv2?|cvc|security\s+pin)
      (?![A-Za-z]){_IS}
    |(?:支付密码|登录密码|取款密码|交易密码|密码|口令){_ZH_IS}
    """,
    re.IGNORECASE | re.VERBOSE,
)
_OTP_RE = re.compile(
    rf"""
    (?<![A-Za-z])(?:
        (?:verification|security|one[\s-]?time|authentication|auth|access|login|log-in|sms|text|2fa
          |two[\s-]factor|otp)\s+(?:pass)?code
        |otp|one[\s-]?time\s+(?:password|pin|passcode)
        |(?:the|my|that|this|your)\s+code(?=\s*(?:is|was|['’]s|[:：]))
      )(?![A-Za-z]){_IS}
    |(?:验证码|校验码|动态码|动态密码|短信码|安全码|确认码){_ZH_IS}
    """,
    re.IGNORECASE | re.VERBOSE,
)
_FILLER_RE = re.compile(
    r"(?:[\s:：,，=]|(?<![A-Za-z])(?:it['’]?s|it\s+is|is|was|uh+|um+|erm?|ah|just|that['’]?s)(?![A-Za-z])"
    r"|是|为)*",
    re.IGNORECASE,
)
_EXPLICIT_RE = re.compile(r"[:：=是为]|(?<![A-Za-z])(?:is|it['’]?s|was)(?![A-Za-z])", re.IGNORECASE)
_VALUE_TOKEN_RE = re.compile(r"[^\s\[\]，。！？；、：,;!?\u3400-\u9fff]+")
_SPACES_RE = re.compile(r"[ \t]+")
_MAX_VALUE_TOKENS = 16  # a password spelled letter by letter: "capital P a s s w o r d 1 2 3"
_VALUE_STRIP = ".,!?;:'\"“”‘’)"
_SPELL_WORDS = frozenset(
    {"capital", "uppercase", "upper", "lowercase", "lower", "small", "dash", "hyphen", "underscore", "dot"}
    | {"hash", "star", "asterisk", "exclamation", "dollar", "percent", "ampersand", "plus", "slash"}
)
_VALUE_STOP = _words(
    """a an the is was are were be been being am it its it's that that's this these those there here what
    what's which who how why when where wrong incorrect correct right expired same locked reset changed
    different too very still just now not no yes yeah okay ok please sorry um uh er erm hmm ah and but so
    or if then because also really actually case sensitive blocked invalid working required needed long
    short weak strong set empty blank something my your his her our their me you i we they he she them
    us on in at of to for from with by about as like up down out off over under again ever never always
    going gonna gotta supposed new old forgotten forgot lost stolen saved stored written fine good bad
    all any some one's i'm you're don't doesn't isn't wasn't can't won't"""
)

# ----------------------------------------------------------------------------------------------- emails

_WRITTEN_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+\-'’])[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*"
    r"\.[A-Za-z]{2,}(?![A-Za-z0-9])"
)
_TLD = (
    "com|net|org|edu|gov|mil|info|biz|io|co|uk|cn|us|ca|au|de|fr|jp|in|me|nl|es|it|hk|tw|sg|ru|br|ch|se"
    "|no|ie|nz|ai|app|dev|email|online"
)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
_DOT = r"(?:\s+dot\s+|\s*[.点點]\s*)"
_SPOKEN_EMAIL_RE = re.compile(
    rf"""
    (?<![A-Za-z0-9._%+\-'’\[])(?P<last>[A-Za-z0-9][A-Za-z0-9_%+\-]*)
    (?P<at>\s+at\s+|\s*(?:@|艾特|at符号)\s*)
    (?P<dom>{_LABEL}(?:\s+{_LABEL})?(?:{_DOT}{_LABEL}(?:\s+{_LABEL})?)*{_DOT}(?:{_TLD}))(?![A-Za-z0-9])
    """,
    re.IGNORECASE | re.VERBOSE,
)
_PREV_LOCAL_RE = re.compile(
    r"(?:(?P<conn>(?<![A-Za-z])(?:dot|underscore|dash|hyphen|period)(?![A-Za-z])|点|下划线)"
    r"|(?P<tok>(?<![A-Za-z0-9._%+\-'’])[A-Za-z0-9][A-Za-z0-9._%+\-]*))(?P<gap>\s*)\Z",
    re.IGNORECASE,
)
_EMAIL_STOP = _words(
    """is it's its it email e-mail emails address my me the that's that was use using to send sent at on
    and or please yes yeah sure so um uh er okay ok also try you your can reach write contact i i'm am
    us our his her their new old work personal via by under be would should will just this with from in
    of for as username id called spelled spell like hi hello thanks thank either correct right then now
    here there are were is: email: address: look go went shop shopping visit log logged sign signed online
    website site page buy bought order ordered available find found check booked"""
)
_MAX_LOCAL_TOKENS = 6

# ------------------------------------------------------------------------------------------------ IBAN

_IBAN_RE = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
)

# Overlap priority: lower wins.
_PRIO_EMAIL, _PRIO_OTP, _PRIO_PASSWORD, _PRIO_IBAN, _PRIO_RUN = 0, 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class _Unit:
    start: int
    end: int
    digits: str
    weak: bool  # "oh"/"o": only a zero when it sits among other digits


@dataclass(frozen=True, slots=True)
class _Run:
    start: int
    end: int
    digits: str  # may end with "X" (Chinese ID check character)

    @property
    def n_digits(self) -> int:
        return len(self.digits) - self.digits.endswith("X")


# ----------------------------------------------------------------------------------------------- public


def placeholder(span: PiiSpan) -> str:
    """The text that replaces a span: ``[card ••••2247]``, ``[id ••••4417]``, ``[phone]``, ..."""
    if span.kind in ("card", "account"):
        return f"[{span.kind} ••••{span.digits[-4:]}]"
    if span.kind == "national_id":
        return f"[id ••••{span.digits[-4:]}]"
    return f"[{span.kind}]"


def find_pii(text: str, lang: str = "en") -> list[PiiSpan]:
    """All PII spans in ``text``, sorted by start and non-overlapping.

    ``lang`` ("en", "zh", ...) is accepted for API stability; detection covers English and Chinese forms
    in any text, because calls switch languages.
    """
    del lang
    if not text:
        return []
    runs = _runs(text)
    cands: list[tuple[int, PiiSpan]] = []
    cands += ((_PRIO_EMAIL, s) for s in _emails(text))
    cands += _secrets(text, runs)
    for m in _IBAN_RE.finditer(text):
        digits = "".join(c for c in m.group() if c.isdigit())
        if len(digits) >= 10:
            cands.append((_PRIO_IBAN, PiiSpan("account", m.start(), m.end(), digits)))
    # A context word applies to the next PII only: the window before a run stops at the end of the previous
    # detected span or placeholder. Redacting turns exactly those spans into placeholders, so a second pass
    # sees the same windows (redaction is idempotent).
    bounds = sorted([m.end() for m in _PLACEHOLDER_RE.finditer(text)] + [s.end for _, s in cands])
    for run in runs:
        span = _classify(text, run, bounds)
        if span is not None:
            cands.append((_PRIO_RUN, span))
            insort(bounds, span.end)
    return _resolve(cands)


def redact(text: str, lang: str = "en") -> str:
    """``text`` with every PII span replaced by its placeholder."""
    spans = find_pii(text, lang)
    if not spans:
        return text
    parts: list[str] = []
    cur = 0
    for span in spans:
        parts.append(text[cur : span.start])
        parts.append(placeholder(span))
        cur = span.end
    parts.append(text[cur:])
    return "".join(parts)


def redact_tokens(tokens: Sequence[str], lang: str = "en", sep: str = " ") -> list[str]:
    """Redact a transcript's word tokens, joined with ``sep`` (" " for English, "" for Chinese).

    Returns a list of the same length: the token where a span starts gets the placeholder (keeping any
    text of that token outside the span), the other tokens inside a span become "", tokens outside every
    span are unchanged.
    """
    text = sep.join(tokens)
    return replace_in_tokens(tokens, [(s.start, s.end, placeholder(s)) for s in find_pii(text, lang)], sep)


def replace_in_text(text: str, cuts: Sequence[Cut]) -> str:
    """``text`` with each cut ``(start, end, replacement)`` applied (cuts sorted, non-overlapping)."""
    parts: list[str] = []
    cur = 0
    for start, end, new in cuts:
        parts.append(text[cur:start])
        parts.append(new)
        cur = end
    parts.append(text[cur:])
    return "".join(parts)


def replace_in_tokens(tokens: Sequence[str], cuts: Sequence[Cut], sep: str = " ") -> list[str]:
    """Cuts on ``sep.join(tokens)`` applied token by token, as ``redact_tokens`` does with PII spans:
    the token where a cut starts gets its replacement, the other tokens inside a cut become ""."""
    if not cuts:
        return list(tokens)
    offsets: list[tuple[int, int]] = []
    pos = 0
    for i, tok in enumerate(tokens):
        if i:
            pos += len(sep)
        offsets.append((pos, pos + len(tok)))
        pos += len(tok)
    text = sep.join(tokens)
    spans = list(cuts)
    placed = [False] * len(spans)
    out: list[str] = []
    first = 0  # spans and tokens are both in text order
    for tok, (ts, te) in zip(tokens, offsets, strict=True):
        while first < len(spans) and spans[first][1] <= ts:
            first += 1
        parts: list[str] = []
        cur = ts
        touched = got_placeholder = False
        for j in range(first, len(spans)):
            start, end, rep = spans[j]
            if start >= te:
                break
            touched = True
            if start > cur:
                parts.append(text[cur:start])
            if not placed[j]:
                parts.append(rep)
                placed[j] = got_placeholder = True
            cur = max(cur, min(end, te))
        if not touched:
            out.append(tok)
            continue
        if cur < te:
            parts.append(text[cur:te])
        new = "".join(parts)
        out.append(new if got_placeholder or new.strip() else "")
    return out


# ------------------------------------------------------------------------------------------------ runs


def _units(text: str) -> list[_Unit]:
    units: list[_Unit] = []
    for m in _UNIT_RE.finditer(text):
        kind = m.lastgroup
        s = m.group()
        low = s.lower()
        if kind == "ascii":
            digits = s.translate(_FULLWIDTH)
        elif kind == "xid":  # digits glued to the X of a Chinese ID: "…441X"
            digits = s[:-1].translate(_FULLWIDTH) + "X"
        elif kind == "zh":
            digits = "".join(_ZH_DIGITS[c] for c in s)
        elif kind == "word":
            digits = _WORD_DIGITS[low]
        elif kind == "teen":
            digits = _TEENS[low]
        elif kind == "tens":
            parts = _SPLIT_RE.split(low)
            digits = _TENS[parts[0]] + (_WORD_DIGITS[parts[1]] if len(parts) > 1 else "0")
        else:  # rep: double/triple
            parts = _SPLIT_RE.split(low)
            digit = _WORD_DIGITS.get(parts[-1], parts[-1])
            digits = digit * (2 if parts[0] == "double" else 3)
        units.append(_Unit(m.start(), m.end(), digits, kind == "word" and low in ("oh", "o")))
    return units


def _runs(text: str) -> list[_Run]:
    runs: list[_Run] = []
    group: list[_Unit] = []
    for unit in _units(text):
        if group and _GAP_RE.fullmatch(text, group[-1].end, unit.start):
            group.append(unit)
            continue
        if group:
            _close_run(text, group, runs)
        group = [unit]
    if group:
        _close_run(text, group, runs)
    return runs


def _close_run(text: str, group: list[_Unit], runs: list[_Run]) -> None:
    # "Oh, ..." or "..., oh": an interjection, not a zero
    while len(group) > 1 and group[0].weak and text[group[0].end : group[1].start].strip():
        group.pop(0)
    while len(group) > 1 and group[-1].weak and text[group[-2].end : group[-1].start].strip():
        group.pop()
    if all(u.weak for u in group):
        return
    start, end = group[0].start, group[-1].end
    digits = "".join(u.digits for u in group)
    if "X" in digits and not (len(digits) == 18 and digits.index("X") == 17):
        # an X is only the check character of an 18-char ID: otherwise it ends the run before it
        cut = next(i for i, u in enumerate(group) if u.digits.endswith("X"))
        group = [*group[:cut], _Unit(group[cut].start, group[cut].end - 1, group[cut].digits[:-1], False)]
        start, end = group[0].start, group[-1].end
        digits = "".join(u.digits for u in group)
    elif len(digits) == 17 and (m := _X_SUFFIX_RE.match(text, end)) is not None:
        end, digits = m.end(), digits + "X"
    runs.append(_Run(start, end, digits))


def _valid_id_shape(digits: str) -> bool:
    """18-char Chinese resident ID: region code, birth date YYYYMMDD (1900-2099), sequence, check."""
    if len(digits) != 18 or not digits[:17].isdigit() or digits[0] == "0":
        return False
    year, month, day = int(digits[6:10]), int(digits[10:12]), int(digits[12:14])
    return 1900 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= 31


def _context(text: str, run: _Run, bounds: list[int]) -> str | None:
    """The category of the nearest context phrase in the few words before ``run``."""
    i = bisect_right(bounds, run.start)
    lo = max(bounds[i - 1] if i else 0, run.start - 80)
    window_start = run.start
    weight = 0.0
    for tok in reversed(list(_CTX_TOKEN_RE.finditer(text, lo, run.start))):
        word = tok.group()
        if "\u3400" <= word[0] <= "\u9fff":
            weight += _CJK_WEIGHT
        elif word.lower() not in _FILLER_WORDS:
            weight += 1.0
        if weight > _WINDOW_WEIGHT:
            break
        window_start = tok.start()
    last = None
    for m in _CTX_RE.finditer(text, window_start, run.start):
        last = m
    return None if last is None else last.lastgroup


def _classify(text: str, run: _Run, bounds: list[int]) -> PiiSpan | None:
    n = run.n_digits
    if n < 6:
        return None
    raw = text[run.start : run.end]
    if (
        _AMOUNT_RAW_RE.fullmatch(raw)
        or _CURRENCY_BEFORE_RE.search(text, max(0, run.start - 6), run.start)
        or _AFTER_AMOUNT_RE.match(text, run.end)
    ):
        return None
    digits = run.digits
    ctx = _context(text, run, bounds)
    kind: PiiKind | None = None
    if ctx == "ref" or (ctx == "amount" and n <= 12):
        return None
    # "20-00-00" after "sort code" is an account detail, not a date
    if ctx not in _STRONG_CONTEXTS and (_DATE_RAW_RE.fullmatch(raw) or _YEAR_LIST_RE.fullmatch(raw)):
        return None
    if digits.endswith("X") or (ctx == "id" and n <= 18):
        kind = "national_id"
    elif ctx == "cardno":
        kind = "card" if n >= 13 else "account"
    elif ctx == "card":
        kind = "card"
    elif ctx == "account":
        kind = "account"
    elif (ctx == "phone" and 7 <= n <= 15) or (ctx == "weak" and 7 <= n <= 12):
        kind = "phone"
    if kind is None:
        plus = _PLUS_RE.search(text, max(0, run.start - 8), run.start)
        if _valid_id_shape(digits) or _SSN_RAW_RE.fullmatch(raw):
            kind = "national_id"
        elif plus is not None and 8 <= n <= 15:
            return PiiSpan("phone", plus.start(), run.end, digits)
        elif n >= 13:
            kind = "card"
        elif n >= 10:
            kind = "phone"
        elif ctx is None and _digit_by_digit(raw, digits):
            kind = "otp"  # "4 8 2 9 1 3", "four eight two nine one three", "四八二九一三": a code read out
        else:
            return None
    start = run.start
    if kind == "phone" and start and text[start - 1] == "(" and ")" in raw:
        start -= 1
    return PiiSpan(kind, start, run.end, digits if kind != "national_id" else digits.upper())


def _digit_by_digit(raw: str, digits: str) -> bool:
    """A run read one digit at a time: six to nine single digits (written or spoken) with spaces or
    commas between them, or Chinese numerals one per digit ("四八二九一三"). A plain "482913" is not."""
    tokens = [t for t in _SPACED_SEP_RE.split(raw) if t]
    if len(tokens) == 1:
        if _ZH_DIGITS_RE.fullmatch(tokens[0]) is None:
            return False
    elif not all(_SINGLE_DIGIT_RE.fullmatch(t) or _ZH_DIGITS_RE.fullmatch(t) for t in tokens):
        return False
    return not _counting(digits)


def _counting(digits: str) -> bool:
    """1 2 3 4 5 6 (or down): counting, not a code."""
    steps = {int(b) - int(a) for a, b in pairwise(digits)}
    return steps in ({1}, {-1})


# --------------------------------------------------------------------------------------------- secrets


def _secrets(text: str, runs: list[_Run]) -> list[tuple[int, PiiSpan]]:
    passes: tuple[tuple[re.Pattern[str], Literal["otp", "password"], int], ...] = (
        (_OTP_RE, "otp", _PRIO_OTP),
        (_PASSWORD_RE, "password", _PRIO_PASSWORD),
    )
    triggers = [(m, kind, prio) for regex, kind, prio in passes for m in regex.finditer(text)]
    if not triggers:
        return []
    trigger_starts = {m.start() for m, _, _ in triggers}
    out: list[tuple[int, PiiSpan]] = []
    for m, kind, prio in triggers:
        explicit = m.group("is") is not None or m.group("zis") is not None
        span = _secret_value(text, m.end(), explicit, kind, runs, trigger_starts)
        if span is not None:
            out.append((prio, span))
    return out


def _secret_value(
    text: str,
    pos: int,
    explicit: bool,
    kind: Literal["otp", "password"],
    runs: list[_Run],
    trigger_starts: set[int],
) -> PiiSpan | None:
    """The value after a trigger: a whole digit run, or a group of tokens (a word, then short or spelled
    tokens: "hunter2", "capital H u n t e r 2", "G 4 8 2 1"). A digit run is never split."""
    filler = _FILLER_RE.match(text, pos)
    assert filler is not None  # the pattern matches the empty string
    explicit = explicit or _EXPLICIT_RE.search(filler.group()) is not None
    pos = filler.end()
    for run in runs:
        if run.start == pos:
            if _COUNT_AFTER_RE.match(text, run.end):
                return None
            return PiiSpan(kind, run.start, run.end, run.digits if kind == "otp" else "")
    tokens: list[str] = []
    start = end = pos
    m = _VALUE_TOKEN_RE.match(text, pos)
    while m is not None and len(tokens) < _MAX_VALUE_TOKENS and m.start() not in trigger_starts:
        tok = m.group().rstrip(_VALUE_STRIP)
        low = tok.lower()
        spelled = len(tok) == 1 and bool(tokens) and len(tokens[-1]) == 1  # "P A S S 1 2"
        if not any(c.isalnum() for c in tok) or (low in _VALUE_STOP and not spelled):
            break
        if tokens and not (len(tok) <= 2 or _has_digit(tok) or low in _WORD_DIGITS or low in _SPELL_WORDS):
            break
        tokens.append(tok)
        end = m.start() + len(tok)
        if len(tok) < len(m.group()):  # trailing punctuation ends the value
            break
        gap = _SPACES_RE.match(text, m.end())
        m = None if gap is None else _VALUE_TOKEN_RE.match(text, gap.end())
    if not tokens:
        return None
    for run in runs:  # a run that starts inside the value belongs to it whole
        if start <= run.start < end < run.end:
            end = run.end
    value = text[start:end]
    digits = "".join(u.digits for u in _units(value)) or "".join(c for c in value if c.isdigit())
    if (kind == "otp" or not explicit) and not digits:
        return None
    return PiiSpan(kind, start, end, digits.translate(_FULLWIDTH) if kind == "otp" else "")


def _has_digit(token: str) -> bool:
    return any(c.isdigit() for c in token)


# ---------------------------------------------------------------------------------------------- emails


def _emails(text: str) -> list[PiiSpan]:
    spans = [PiiSpan("email", m.start(), m.end(), "") for m in _WRITTEN_EMAIL_RE.finditer(text)]
    for m in _SPOKEN_EMAIL_RE.finditer(text):
        if m.group("last").lower() in _EMAIL_STOP:
            continue
        start = m.start()
        if "@" not in m.group("at"):
            start = _local_part_start(text, start)
        spans.append(PiiSpan("email", start, m.end(), ""))
    return spans


def _local_part_start(text: str, start: int) -> int:
    """Walk back from the last word before "at" over the spoken local part ("mark dot ellis", "priya n 88"),
    stopping at punctuation, a non-Latin character or a function word ("is", "it's", "my", "to", ...)."""
    best = start
    cur = start
    count = 0
    while count < _MAX_LOCAL_TOKENS:
        m = _PREV_LOCAL_RE.search(text, max(0, cur - 40), cur)
        if m is None:
            break
        if m.group("conn") is not None:
            cur = m.start()
            continue
        tok = m.group("tok")
        if tok.lower() in _EMAIL_STOP or tok.endswith(".") or len(tok) > 24:
            break
        cur = best = m.start()
        count += 1
    return best


# ------------------------------------------------------------------------------------------- overlaps


def _resolve(cands: list[tuple[int, PiiSpan]]) -> list[PiiSpan]:
    """Keep the highest-priority spans (then the earliest, then the longest) that do not overlap. A password
    value running into a higher-priority span is cut short before it instead of dropped."""
    cands.sort(key=lambda c: (c[0], c[1].start, -c[1].end))
    kept: list[PiiSpan] = []
    for _, span in cands:
        clashes = [k for k in kept if span.start < k.end and k.start < span.end]
        if clashes and span.kind == "password":
            cut = min(k.start for k in clashes)
            if cut > span.start:
                span = PiiSpan(span.kind, span.start, cut, span.digits)
                clashes = [k for k in kept if span.start < k.end and k.start < span.end]
        if not clashes and span.end > span.start:
            kept.append(span)
    kept.sort(key=lambda s: s.start)
    return kept
