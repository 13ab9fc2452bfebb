"""Rule-pack regexes run on RE2 (linear time): a catastrophic pattern cannot stall a match, and what
RE2 cannot run (lookaround, backreferences) is refused at validation with its file and line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from coach.matcher import TextMatcher
from coach.rules import DEFAULT_PACK, MatchSpec, RulePackError, TextMatch, load_rules
from coach.saferegex import UnsafePatternError, compile_rule_regex
from sidecar.kernel.text import clauses

pytestmark = pytest.mark.unit

# each takes exponential (or high-polynomial) time in a backtracking engine on the lines below
CATASTROPHIC = [
    r"(a+)+$",
    r"(a|aa)+$",
    r"(a*)*b$",
    r"(\w+\s?)+$",
    r"(.*a){12}x",
    r"^(([a-z])+.)+[A-Z]([a-z])+$",
]
LINES = ["a" * 25 + " b", "a" * 40 + "!", "a " * 2000 + "b"]

PACK = """\
pack: t
version: 1
lang: en
rules:
  - id: t.rule
    category: unprofessional
    message: m
    match:
      regex: [{pattern}]
"""


def write_pack(tmp_path: Path, pattern: str, ident: str = "t.rule") -> Path:
    text = PACK.format(pattern=f"'{pattern}'").replace("id: t.rule", f"id: {ident}")
    (tmp_path / "rules.yaml").write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_patterns_load_and_match_in_linear_time(tmp_path: Path, pattern: str) -> None:
    rules = load_rules(write_pack(tmp_path, pattern))
    matcher = TextMatcher(rules.rules[0].match.text, None)
    for line in LINES:
        units = clauses(line)
        start = time.perf_counter()
        matcher.lexical(units)
        elapsed = time.perf_counter() - start
        assert elapsed < 0.1, f"{pattern} on a {len(line)}-char line took {elapsed:.3f} s"


def test_a_matching_line_still_matches() -> None:
    matcher = TextMatcher(TextMatch(regex=(r"(a+)+$",)), None)
    hit = matcher.lexical(clauses("aaaa"))
    assert hit is not None
    assert hit.reason == "regex /(a+)+$/"


@pytest.mark.parametrize(
    ("pattern", "hint"),
    [
        (r"(?<!can )i see", "lookbehind"),
        (r"refund(?! later)", "negative lookahead"),
        (r"(?=x)x", "lookahead"),
        (r"(a)\1", "backreference"),
    ],
)
def test_what_re2_cannot_run_is_refused_with_file_line_and_hint(
    tmp_path: Path, pattern: str, hint: str
) -> None:
    with pytest.raises(RulePackError) as info:
        load_rules(write_pack(tmp_path, pattern))
    (problem,) = info.value.problems
    assert problem.startswith("rules.yaml:9:"), problem
    assert "RE2" in problem
    assert hint in problem


def test_an_overlong_pattern_is_refused() -> None:
    with pytest.raises(UnsafePatternError):
        compile_rule_regex("a" * 5000)
    with pytest.raises(UnsafePatternError):
        compile_rule_regex("((a{100}){100}){100}")  # beyond RE2's repetition and memory limits


def test_an_id_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    pack = write_pack(tmp_path, "x", ident='"t.rule\\n"')
    with pytest.raises(RulePackError) as info:
        load_rules(pack)
    assert "may use letters, digits" in str(info.value)


def test_every_shipped_regex_runs_on_re2() -> None:
    rules = load_rules(DEFAULT_PACK)
    patterns: set[str] = set()
    specs: list[MatchSpec | None] = [*(e.match for e in rules.rules), *(e.match for e in rules.intents)]
    for step in rules.disclosures:
        specs += [step.match, step.before, step.due_when]
    for spec in specs:
        if spec is None:
            continue
        patterns.update(spec.text.regex, spec.unless.regex)
        if spec.context is not None:
            patterns.update(spec.context.match.regex)
    assert len(patterns) > 40
    for pattern in patterns:
        compile_rule_regex(pattern)


@pytest.mark.parametrize(
    ("text", "fires"),
    [
        ("i can see your account balance is 420 dollars", True),
        ("so i see the second charge on your card from monday", True),
        ("can i see your account number please", False),
        ("could i see the card you used", False),
        ("may i see your booking reference", False),
    ],
)
def test_rewritten_lookbehind_keeps_its_meaning(text: str, fires: bool) -> None:
    """The identity-verification 'before' regex had (?<!can )(?<!could )(?<!may ): the RE2 form
    refuses the same modal questions."""
    rules = load_rules(DEFAULT_PACK)
    step = next(s for s in rules.disclosures if s.id == "disclosure.identity_verification")
    assert step.before is not None
    matcher = TextMatcher(TextMatch(regex=step.before.text.regex[:1]), None)
    assert (matcher.lexical(clauses(text)) is not None) is fires


@pytest.mark.parametrize(
    ("text", "fires"),
    [("您可以打12315投诉", True), ("编号123156", False), ("我们保证全额理赔", True), ("我们不保证全额理赔", False),
     ("一定能赔了", False), ("这只基金肯定涨", True), ("这只基金不肯定涨", False), ("这只基金没肯定涨", False)],
)  # fmt: skip
def test_rewritten_chinese_lookarounds_keep_their_meaning(text: str, fires: bool) -> None:
    rules = load_rules(DEFAULT_PACK)
    specs = [e.match for e in rules.rules] + [e.match for e in rules.intents]
    regexes = [r for spec in specs for r in spec.text.regex if "不没" in r or "12315" in r]
    matcher = TextMatcher(TextMatch(regex=tuple(regexes)), None)
    assert (matcher.lexical(clauses(text)) is not None) is fires
