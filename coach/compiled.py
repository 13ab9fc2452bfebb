"""A rule set compiled for matching: every ``match`` turned into a ``Matcher`` once per (re)load."""

from __future__ import annotations

from dataclasses import dataclass

from coach.matcher import Matcher, TextMatcher
from coach.rules import Category, DisclosureStep, IntentRule, MatchSpec, Rule, RuleSet, TextMatch
from knowledge.embed import Embedder


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    matcher: Matcher
    excuse: TextMatcher | None = None  # dead air: what the agent says to announce a hold


@dataclass(frozen=True, slots=True)
class CompiledIntent:
    rule: IntentRule
    matcher: Matcher


@dataclass(frozen=True, slots=True)
class CompiledStep:
    step: DisclosureStep
    matcher: Matcher
    before: Matcher | None
    due_when: Matcher | None


@dataclass(frozen=True, slots=True)
class CompiledRules:
    source: RuleSet
    rules: tuple[CompiledRule, ...]
    intents: tuple[CompiledIntent, ...]
    steps: tuple[CompiledStep, ...]
    semantic: bool  # does any matcher need sentence embeddings?
    fatal_labels: frozenset[str] = frozenset()  # judged categories read on partials too


def compile_rules(rules: RuleSet, embedder: Embedder | None) -> CompiledRules:
    # the pack's ordinary sentences: every semantic match must resemble its rule more than these
    neutral = TextMatcher(TextMatch(exemplars=rules.neutral), embedder) if rules.neutral else None

    def matcher(spec: MatchSpec) -> Matcher:
        return Matcher(spec, embedder, neutral)

    crules = tuple(
        CompiledRule(
            r,
            matcher(r.match),
            TextMatcher(r.match.timing.excused_by, None, negatable=False) if r.match.timing else None,
        )
        for r in (*rules.rules, *judged_rules(rules.categories))
    )
    cintents = tuple(
        CompiledIntent(r, matcher(r.match)) for r in (*rules.intents, *judged_intents(rules.categories))
    )
    csteps = tuple(
        CompiledStep(
            s,
            matcher(s.match),
            matcher(s.before) if s.before else None,
            matcher(s.due_when) if s.due_when else None,
        )
        for s in rules.disclosures
    )
    matchers = [c.matcher for c in crules] + [c.matcher for c in cintents]
    matchers += [m for s in csteps for m in (s.matcher, s.before, s.due_when) if m is not None]
    fatal = frozenset(c.label for c in rules.categories if c.kind == "violation" and c.severity == "fatal")
    return CompiledRules(rules, crules, cintents, csteps, any(m.semantic for m in matchers), fatal)


def judged_rules(categories: tuple[Category, ...]) -> list[Rule]:
    """A violation category of the pack is a rule the judge decides (after the exact rules, so an
    exact match is the evidence shown when both fire): one per category and language."""
    return [
        Rule(
            c.id,
            c.label,
            c.severity,
            c.channel,
            c.lang,
            c.message,
            MatchSpec(judge=(c.label,)),
            None,
            c.source,
        )
        for c in categories
        if c.kind == "violation"
    ]


def judged_intents(categories: tuple[Category, ...]) -> list[IntentRule]:
    return [
        IntentRule(c.id, c.label, c.channel, c.lang, MatchSpec(judge=(c.label,)), 0.9, c.source)
        for c in categories
        if c.kind == "intent"
    ]
