"""What the language model is asked, and how its answer is read back: pure functions.

Every task has explicit role and format instructions and a grammar (GBNF) that forces the answer's
shape, so the model cannot add bullets, preambles or fields: a summary is exactly four labelled
lines (need, verified facts, promises made, open risk), a post-call note adds a disposition from a
closed list, a reply starts with the id of a card that was shown. Labels and instructions follow
the call's language (English or Mandarin).

Prompts put what changes last: the fixed instructions, then the transcript in order, then a short
fixed question, so the runtime's prompt cache reuses everything up to the newest turns when a
call's summary is refreshed. The transcript window keeps the first turns (where the need is
usually stated) and the most recent ones; the cut moves in steps of ``WINDOW_STEP`` turns, so the
cached prefix survives most refreshes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

Lang: TypeAlias = Literal["en", "zh"]
Field: TypeAlias = Literal["need", "verified", "promised", "risk"]
Outcome: TypeAlias = Literal["resolved", "follow-up", "escalated"]
FIELDS: tuple[Field, ...] = ("need", "verified", "promised", "risk")
OUTCOMES: tuple[Outcome, ...] = ("resolved", "follow-up", "escalated")
HEAD_TURNS = 2  # always kept: the opening, where the need is usually stated
WINDOW_STEP = 8  # the window's cut moves by this many turns at a time (prompt cache)
LINE_CHARS = 160  # the longest line the grammar lets the model write

LABELS: dict[Lang, dict[str, str]] = {
    "en": {"need": "Need", "verified": "Verified", "promised": "Promised", "risk": "Risk",
           "disposition": "Disposition", "reason": "Reason"},
    "zh": {"need": "需求", "verified": "已核实", "promised": "承诺", "risk": "风险",
           "disposition": "处理结果", "reason": "原因"},
}  # fmt: skip
SEPARATOR: dict[Lang, str] = {"en": ": ", "zh": "："}
NONE_WORDS = frozenset(
    {"none", "n/a", "na", "nothing", "no", "unknown", "not stated", "无", "没有", "暂无", "未提及"}
)
SPEAKERS: dict[Lang, dict[str, str]] = {
    "en": {"agent": "AGENT", "customer": "CUSTOMER"},
    "zh": {"agent": "坐席", "customer": "客户"},
}

_SYSTEM_SUMMARY: dict[Lang, str] = {
    "en": (
        "You write hand-off notes about a customer-service call for the next person who takes it. "
        "Use only what the transcript says. Never guess or add anything: no names, numbers, dates, "
        "amounts or promises that are not in the transcript. If the transcript does not state "
        "something, write none. Each line is one short sentence of at most 15 words.\n"
        "Need: what the customer wants.\n"
        "Verified: what the agent said they checked or confirmed; none if the agent checked nothing.\n"
        "Promised: what the agent said they will do, with any time stated; none if nothing was promised.\n"
        "Risk: what is still open or what the customer is unhappy about; none if nothing is."
    ),
    "zh": (
        "你为下一位接手的同事写客服通话交接摘要。只使用通话记录里明确说出的内容，不要猜测，"
        "不要添加记录中没有的姓名、数字、日期、金额或承诺。记录里没有的内容写“无”。每行一句，不超过25个字。\n"
        "需求：客户想要什么。\n"
        "已核实：坐席说已查看或确认过的事实；坐席没有核实任何内容就写“无”。\n"
        "承诺：坐席说会做什么及所说的时间；没有承诺就写“无”。\n"
        "风险：仍未解决的问题或客户的不满；没有就写“无”。"
    ),
}
_QUESTION_SUMMARY: dict[Lang, str] = {
    "en": "Write the four lines (Need, Verified, Promised, Risk) about this transcript only.",
    "zh": "只根据这段通话记录写四行（需求、已核实、承诺、风险）。",
}
_QUESTION_POSTCALL: dict[Lang, str] = {
    "en": (
        "The call has ended. Write the four lines (Need, Verified, Promised, Risk) about this transcript "
        "only, then the disposition: escalated if the agent transferred the call or handed the case to a "
        "supervisor or another team; follow-up if something is still to be done after the call; resolved "
        "only if the customer's need was fully met during the call. Then its reason in one short "
        "sentence from the transcript."
    ),
    "zh": (
        "通话已结束。只根据这段通话记录写四行（需求、已核实、承诺、风险），然后写处理结果：坐席把电话转给主管或把问题交给其他团队，"
        "写 escalated；通话结束后还有事情要做，写 follow-up；只有客户的需求在通话中已完全解决，才写 resolved。"
        "再用一句话写出记录中的原因。"
    ),
}
_SYSTEM_REPLY: dict[Lang, str] = {
    "en": (
        "You suggest what a customer-service agent says next. Write one or two short sentences the "
        "agent can say to the customer now, following the procedure card that fits. Start with the id "
        "of that card in square brackets. Use only facts from the card and the transcript: no names, "
        "numbers, amounts or promises that are not there. Speak to the customer, in English."
    ),
    "zh": (
        "你为客服坐席建议下一句话。写一到两句坐席现在可以对客户说的话，按最合适的流程卡片来说。"
        "以该卡片的编号开头，写在方括号里。只使用卡片和通话记录中的事实，不要添加其中没有的姓名、数字、金额或承诺。"
        "直接对客户说，用中文。"
    ),
}
_QUESTION_REPLY: dict[Lang, str] = {
    "en": "The agent's next words:",
    "zh": "坐席接下来说：",
}


@dataclass(frozen=True, slots=True)
class Turn:
    channel: str  # "agent" | "customer"
    text: str


@dataclass(frozen=True, slots=True)
class Card:
    """A procedure card shown to the agent (a ``suggestion``)."""

    snippet_id: str
    title: str
    body: str


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["system", "user"]
    content: str


@dataclass(frozen=True, slots=True)
class Prompt:
    messages: tuple[Message, ...]
    grammar: str
    max_tokens: int


def _cjk_share(text: str) -> float:
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for ch in letters if "\u4e00" <= ch <= "\u9fff") / len(letters)


def call_language(declared: str, turns: Sequence[Turn]) -> Lang:
    """``zh`` or ``en``: the call's declared language, or (``auto``, empty) what its turns are in."""
    if declared in ("en", "zh"):
        return declared  # type: ignore[return-value]
    return "zh" if _cjk_share(" ".join(t.text for t in turns[-20:])) >= 0.3 else "en"


def window(turns: Sequence[Turn], budget_chars: int) -> tuple[list[Turn], int]:
    """The turns that fit ``budget_chars``: the first ``HEAD_TURNS`` and the newest, the cut moved
    in steps of ``WINDOW_STEP``; also how many turns were left out."""
    total = sum(len(t.text) + 12 for t in turns)
    if total <= budget_chars or len(turns) <= HEAD_TURNS:
        return list(turns), 0
    head = list(turns[:HEAD_TURNS])
    budget = budget_chars - sum(len(t.text) + 12 for t in head)
    start = HEAD_TURNS
    while start < len(turns):
        if sum(len(t.text) + 12 for t in turns[start:]) <= budget:
            break
        start += WINDOW_STEP
    start = min(start, len(turns) - 1)
    return head + list(turns[start:]), start - HEAD_TURNS


def transcript_block(turns: Sequence[Turn], lang: Lang, skipped: int = 0) -> str:
    names = SPEAKERS[lang]
    lines = [f"{names.get(t.channel, t.channel.upper())}: {t.text.strip()}" for t in turns if t.text.strip()]
    if skipped:
        lines.insert(min(HEAD_TURNS, len(lines)), "…" if lang == "en" else "……")
    return "\n".join(lines)


def _gbnf_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _line_rule() -> str:
    return f"line ::= [^\\n]{{1,{LINE_CHARS}}}\n"


def summary_grammar(lang: Lang, postcall: bool = False) -> str:
    labels, sep = LABELS[lang], SEPARATOR[lang]
    parts = [_gbnf_string(("\n" if i else "") + labels[f] + sep) + " line" for i, f in enumerate(FIELDS)]
    if postcall:
        outcomes = " | ".join(_gbnf_string(o) for o in OUTCOMES)
        parts.append(_gbnf_string("\n" + labels["disposition"] + sep) + f" ({outcomes})")
        parts.append(_gbnf_string("\n" + labels["reason"] + sep) + " line")
    return "root ::= " + " ".join(parts) + "\n" + _line_rule()


def summary_prompt(turns: Sequence[Turn], lang: Lang, *, max_tokens: int, budget_chars: int,
                   postcall: bool = False) -> Prompt:  # fmt: skip
    kept, skipped = window(turns, budget_chars)
    question = (_QUESTION_POSTCALL if postcall else _QUESTION_SUMMARY)[lang]
    heading = "Transcript:" if lang == "en" else "通话记录："
    user = f"{heading}\n{transcript_block(kept, lang, skipped)}\n\n{question}"
    return Prompt(
        (Message("system", _SYSTEM_SUMMARY[lang]), Message("user", user)),
        summary_grammar(lang, postcall),
        max_tokens,
    )


def reply_grammar(snippet_ids: Sequence[str]) -> str:
    line = _line_rule()
    if not snippet_ids:
        return "root ::= line\n" + line
    ids = " | ".join(_gbnf_string(i) for i in snippet_ids)
    return f'root ::= "[" ({ids}) "] " line\n' + line


def reply_prompt(turns: Sequence[Turn], cards: Sequence[Card], lang: Lang, *, max_tokens: int,
                 last_turns: int = 6) -> Prompt:  # fmt: skip
    card_heading = "Procedure cards:" if lang == "en" else "流程卡片："
    card_lines = [f"[{c.snippet_id}] {c.title}: {c.body.strip()}" for c in cards]
    if not card_lines:
        card_lines = ["(none)" if lang == "en" else "（无）"]
    heading = "Last turns:" if lang == "en" else "最近的对话："
    user = (
        f"{card_heading}\n" + "\n".join(card_lines) + f"\n\n{heading}\n"
        f"{transcript_block(turns[-last_turns:], lang)}\n\n{_QUESTION_REPLY[lang]}"
    )
    return Prompt(
        (Message("system", _SYSTEM_REPLY[lang]), Message("user", user)),
        reply_grammar([c.snippet_id for c in cards]),
        max_tokens,
    )


@dataclass(frozen=True, slots=True)
class ParsedNote:
    """A summary as the model wrote it: each field's text ("" for none), and for a post-call
    note the disposition (None when the answer was cut short)."""

    fields: dict[Field, str]
    outcome: Outcome | None = None
    reason: str = ""


def is_none(value: str) -> bool:
    return value.strip().strip(".。!！ ").lower() in NONE_WORDS or not value.strip()


def parse_note(text: str, lang: Lang) -> ParsedNote:
    """Read the labelled lines back; a line cut off by the token limit (the last one, without its
    full label) is left out."""
    labels, sep = LABELS[lang], SEPARATOR[lang]
    by_label = {labels[key] + sep: key for key in (*FIELDS, "disposition", "reason")}
    values: dict[str, str] = {}
    for raw in text.split("\n"):
        for prefix, key in by_label.items():
            if raw.startswith(prefix):
                values[key] = raw[len(prefix) :].strip()
                break
    fields = {f: ("" if is_none(values.get(f, "")) else values.get(f, "")) for f in FIELDS}
    outcome_text = values.get("disposition", "").strip()
    outcome = next((o for o in OUTCOMES if outcome_text == o), None)
    return ParsedNote(fields, outcome, values.get("reason", "").strip())


_CITATION = re.compile(r"^\[([^\]\n]{1,128})\]\s*")


def parse_reply(text: str) -> tuple[str | None, str]:
    """(cited snippet id or None, the sentence) from ``[id] sentence``."""
    match = _CITATION.match(text.strip())
    if match is None:
        return None, text.strip()
    return match.group(1), text.strip()[match.end() :].strip()
