"""Rule packs: YAML files, versioned, validated with errors that name file, line and problem.

A pack directory holds ``*.yaml`` files; each file is one mapping::

    pack: default            # pack name (required)
    version: 3               # integer, bumped on every published change (required)
    lang: en                 # default language of its entries: en | zh | any
    domain: banking          # optional, informational
    rules: [...]             # violations
    intents: [...]           # customer intents
    disclosures: [...]       # required-disclosure checklist steps
    neutral: [...]           # ordinary sentences no rule should match (the semantic background)
    categories: [...]        # what the judge learns (coach/judge.py): a label's definition, examples
                             # and hard negatives; a violation category also carries its message

Every entry has an ``id`` (unique across the directory) and a ``match``::

    match:
      phrases: ["i promise", "guarantee ... will"]   # normalised, stemmed; "..." skips up to 4 words
      regex: ['\\bguaranteed? (return|income)s?\\b']  # on the normalised clause
      exemplars: ["this fund can never lose money"]  # semantic, compared by embedding
      threshold: 0.87                                # cosine an exemplar must reach (default per kind)
      unless: {phrases: [...], regex: [...], exemplars: [...]}   # hard negatives: stay quiet
      context: {phrases: [...], regex: [...], turns: 6}          # the recent call must mention one
      timing: {silence_s: 12, excused_by: {phrases: [...]}, excuse_s: 90}   # dead air
      pii: [card, national_id]                                    # the speaker reads out such a number
      judge: [recording_notice]                                   # the judge reads the utterance as one

A category (``categories:``)::

    - id: judge.abuse.en
      label: abuse                  # a violation category, an intent, a disclosure step, a signal...
      kind: violation               # violation | intent | disclosure | signal | emotion | background
      channel: agent                # whose utterances it describes
      definition: "..."             # required (not for background): what counts and what does not
      message: "..."                # violations: what the agent sees
      severity: fatal               # violations: default from the category
      threshold: 0.5                # probability the judge must reach (default per kind)
      examples: [...]               # at least MIN_EXAMPLES positives
      negatives: [...]              # hard negatives: close in wording, not the label
      teaches: [violation, intent]  # background only: the kinds of label it is a negative for

See ``coach/packs/default`` for the shipped pack and README "Rule packs" for each field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import yaml

from coach.saferegex import UnsafePatternError, compile_rule_regex
from sidecar.kernel.errors import AssistError

CATEGORIES: dict[str, Literal["fatal", "serious", "general"]] = {
    "abuse": "fatal",
    "discrimination": "fatal",
    "privacy_leak": "fatal",
    "false_promise": "serious",
    "misleading_claim": "serious",
    "missing_disclosure": "serious",
    "dead_air": "general",
    "unprofessional": "general",
}
SEVERITIES = ("fatal", "serious", "general")
PII_KINDS = ("card", "national_id", "phone", "email", "account", "password", "otp")
JUDGE_KINDS = ("violation", "intent", "disclosure", "signal", "emotion", "background")
EMOTION_LABELS = ("angry", "negative", "neutral", "positive")
MIN_EXAMPLES = 8  # a category with fewer positives (per file) cannot be learned
ChannelSpec: TypeAlias = Literal["agent", "customer", "any"]
LangSpec: TypeAlias = str  # "en" | "zh" | "any"


class RulePackError(AssistError):
    """A rule pack that cannot be used; ``problems`` lists every one found, each ``file:line: what``."""

    exit_code = 4

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "; ".join(problems)
            if len(problems) <= 3
            else f"{len(problems)} problems: " + "; ".join(problems[:3]) + " ..."
        )
        self.problems = problems


@dataclass(frozen=True, slots=True)
class TextMatch:
    phrases: tuple[str, ...] = ()
    regex: tuple[str, ...] = ()
    exemplars: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.phrases or self.regex or self.exemplars)


@dataclass(frozen=True, slots=True)
class Context:
    match: TextMatch
    turns: int = 6


@dataclass(frozen=True, slots=True)
class Timing:
    silence_s: float
    excused_by: TextMatch = TextMatch()
    excuse_s: float = 90.0


@dataclass(frozen=True, slots=True)
class MatchSpec:
    text: TextMatch = TextMatch()
    threshold: float | None = None
    unless: TextMatch = TextMatch()
    context: Context | None = None
    timing: Timing | None = None
    pii: tuple[str, ...] = ()
    judge: tuple[str, ...] = ()  # labels of the judge (categories) that satisfy this match


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    category: str
    severity: Literal["fatal", "serious", "general"]
    channel: ChannelSpec
    lang: LangSpec
    message: str
    match: MatchSpec
    snippet: str | None = None
    source: str = ""  # file:line


@dataclass(frozen=True, slots=True)
class IntentRule:
    id: str
    intent: str
    channel: ChannelSpec
    lang: LangSpec
    match: MatchSpec
    confidence: float = 0.9
    source: str = ""


@dataclass(frozen=True, slots=True)
class DisclosureStep:
    """A required step. ``done`` when the agent says it (``match``); ``missed`` when the deadline
    passes (the agent's first ``agent_turns`` turns or ``within_s`` seconds), when the agent does what
    it must precede (``before``), or at the end of the call if ``by_end``. ``due_when`` makes a
    conditional step due (an investment topic makes the risk disclosure due)."""

    id: str
    step: str
    lang: LangSpec
    mandatory: bool
    message: str
    match: MatchSpec
    agent_turns: int | None = None
    within_s: float | None = None
    before: MatchSpec | None = None
    due_when: MatchSpec | None = None
    by_end: bool = False
    severity: Literal["fatal", "serious", "general"] = "serious"
    source: str = ""


@dataclass(frozen=True, slots=True)
class Category:
    """One label the judge learns from the pack: its meaning (definition, examples, hard negatives)
    and, for a violation, what the agent is told."""

    id: str
    label: str
    kind: Literal["violation", "intent", "disclosure", "signal", "emotion", "background"]
    channel: ChannelSpec
    lang: LangSpec
    definition: str
    examples: tuple[str, ...]
    negatives: tuple[str, ...] = ()
    message: str = ""
    severity: Literal["fatal", "serious", "general"] = "general"
    threshold: float | None = None
    source: str = ""
    teaches: tuple[str, ...] = JUDGE_KINDS  # background: the kinds of label it is a negative for


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Everything loaded from one pack directory; immutable, swapped whole on reload."""

    rules: tuple[Rule, ...] = ()
    intents: tuple[IntentRule, ...] = ()
    disclosures: tuple[DisclosureStep, ...] = ()
    neutral: tuple[str, ...] = ()  # ordinary talk: a semantic match must resemble its rule more than these
    versions: Mapping[str, int] = field(default_factory=dict)  # file name → version
    fingerprint: str = ""
    categories: tuple[Category, ...] = ()  # what the judge learns (every language: it is multilingual)

    def for_lang(self, lang: str) -> RuleSet:
        def keep(entry_lang: str) -> bool:
            return entry_lang in ("any", lang)

        return RuleSet(
            tuple(r for r in self.rules if keep(r.lang)),
            tuple(r for r in self.intents if keep(r.lang)),
            tuple(r for r in self.disclosures if keep(r.lang)),
            self.neutral,
            self.versions,
            self.fingerprint,
            self.categories,
        )


# ---------------------------------------------------------------- YAML with line numbers


class _Str(str):
    line = 0


class _Map(dict[str, Any]):
    line = 0


class _Seq(list[Any]):
    line = 0


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # libyaml when present: 5x faster
    pass


def _construct_str(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> _Str:
    value = _Str(loader.construct_scalar(node))
    value.line = node.start_mark.line + 1
    return value


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _Map:
    out = _Map()
    out.line = node.start_mark.line + 1
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:  # "? [a, b]: c": a list cannot be a key
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        out[key] = loader.construct_object(value_node, deep=True)
    return out


def _construct_seq(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    return out


_Loader.add_constructor("tag:yaml.org,2002:str", _construct_str)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _line(value: Any, default: int) -> int:
    return int(getattr(value, "line", 0)) or default


class _Checker:
    """Collects every problem of a file instead of stopping at the first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []

    def fail(self, where: Any, line: int, what: str) -> None:
        self.problems.append(f"{self.path.name}:{_line(where, line)}: {what}")

    def keys(self, data: Any, allowed: Iterable[str], what: str) -> None:
        allowed = tuple(allowed)
        for key in data:
            if key not in allowed:
                self.fail(
                    key, _line(data, 0), f"unknown field {key!r} in {what} (allowed: {', '.join(allowed)})"
                )

    def string(self, data: Any, key: str, what: str, *, required: bool = True) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                self.fail(data, 0, f"{what} needs {key!r}")
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(value, _line(data, 0), f"{what}: {key!r} must be a non-empty string")
            return None
        return str(value)

    def strings(self, value: Any, line: int, what: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.fail(value, line, f"{what} must be a list of non-empty strings")
            return ()
        return tuple(value)  # keeps each string's line for later messages

    def text_match(self, data: Any, line: int, what: str) -> TextMatch:
        if data is None:
            return TextMatch()
        if not isinstance(data, dict):
            self.fail(data, line, f"{what} must be a mapping with phrases/regex/exemplars")
            return TextMatch()
        line = _line(data, line)
        self.keys(data, ("phrases", "regex", "exemplars"), what)
        regexes = self.strings(data.get("regex"), line, f"{what}.regex")
        for pattern in regexes:
            try:
                compile_rule_regex(pattern)  # the linear-time engine the matcher runs (coach/saferegex.py)
            except UnsafePatternError as exc:
                self.fail(
                    pattern,
                    line,
                    f"{what}.regex {pattern!r} is not a valid regular expression for RE2, the linear-time engine rules run on: {exc}",
                )
        return TextMatch(
            self.strings(data.get("phrases"), line, f"{what}.phrases"),
            regexes,
            self.strings(data.get("exemplars"), line, f"{what}.exemplars"),
        )

    def match(self, data: Any, line: int, what: str, *, required: bool = True) -> MatchSpec:
        if data is None:
            if required:
                self.fail(data, line, f"{what} needs 'match'")
            return MatchSpec()
        if not isinstance(data, dict):
            self.fail(data, line, f"{what}: 'match' must be a mapping")
            return MatchSpec()
        line = _line(data, line)
        allowed = (
            "phrases",
            "regex",
            "exemplars",
            "threshold",
            "unless",
            "context",
            "timing",
            "pii",
            "judge",
        )
        self.keys(data, allowed, f"{what}.match")
        text = self.text_match({k: data[k] for k in ("phrases", "regex", "exemplars") if k in data}, line,
                               f"{what}.match")  # fmt: skip
        threshold = data.get("threshold")
        if threshold is not None and (not isinstance(threshold, (int, float)) or not 0 < threshold <= 1):
            self.fail(threshold, line, f"{what}.match.threshold must be a number in (0, 1]")
            threshold = None
        context = None
        if (raw := data.get("context")) is not None:
            if not isinstance(raw, dict):
                self.fail(raw, line, f"{what}.match.context must be a mapping")
            else:
                turns = raw.get("turns", 6)
                if not isinstance(turns, int) or turns < 1:
                    self.fail(raw, line, f"{what}.match.context.turns must be a positive integer")
                    turns = 6
                inner = {k: v for k, v in raw.items() if k != "turns"}
                context = Context(
                    self.text_match(_copy_line(inner, raw), line, f"{what}.match.context"), turns
                )
        timing = None
        if (raw := data.get("timing")) is not None:
            timing = self.timing(raw, line, f"{what}.match.timing")
        pii = self.strings(data.get("pii"), line, f"{what}.match.pii")
        for kind in pii:
            if kind not in PII_KINDS:
                self.fail(
                    kind, line, f"{what}.match.pii: unknown kind {kind!r} (known: {', '.join(PII_KINDS)})"
                )
        judge = self.strings(data.get("judge"), line, f"{what}.match.judge")
        spec = MatchSpec(text, float(threshold) if threshold else None,
                         self.text_match(data.get("unless"), line, f"{what}.match.unless"), context, timing, pii,
                         judge)  # fmt: skip
        if required and not (spec.text or spec.timing or spec.pii or spec.judge):
            self.fail(data, line, f"{what}.match needs phrases, regex, exemplars, judge, timing or pii")
        return spec

    def timing(self, raw: Any, line: int, what: str) -> Timing | None:
        if not isinstance(raw, dict):
            self.fail(raw, line, f"{what} must be a mapping")
            return None
        self.keys(raw, ("silence_s", "excused_by", "excuse_s"), what)
        silence = raw.get("silence_s")
        excuse = raw.get("excuse_s", 90.0)
        if not isinstance(silence, (int, float)) or silence <= 0:
            self.fail(raw, line, f"{what}.silence_s must be a positive number of seconds")
            return None
        if not isinstance(excuse, (int, float)) or excuse < 0:
            self.fail(raw, line, f"{what}.excuse_s must be a number of seconds")
            excuse = 90.0
        return Timing(float(silence), self.text_match(raw.get("excused_by"), line, f"{what}.excused_by"),
                      float(excuse))  # fmt: skip

    def choice(self, data: Any, key: str, choices: Iterable[str], default: str, what: str) -> str:
        value = data.get(key, default)
        choices = tuple(choices)
        if value not in choices:
            self.fail(value, _line(data, 0), f"{what}: {key} {value!r} is not one of {', '.join(choices)}")
            return default
        return str(value)


def _copy_line(target: dict[str, Any], source: Any) -> _Map:
    out = _Map(target)
    out.line = _line(source, 0)
    return out


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_LANGS = ("en", "zh", "any")
_CHANNELS = ("agent", "customer", "any")


_Loaded = tuple[
    list["Rule"], list["IntentRule"], list["DisclosureStep"], list[str], int, list[str], list["Category"]
]


def _load_file(path: Path, seen_ids: dict[str, str]) -> _Loaded:
    check = _Checker(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 0
        return [], [], [], [], 0, [f"{path.name}:{line}: YAML syntax error: {exc.problem}"], []
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return [], [], [], [], 0, [f"{path.name}: cannot read: {exc}"], []
    if not isinstance(data, dict):
        return (
            [],
            [],
            [],
            [],
            0,
            [f"{path.name}:1: a rule file is a mapping with pack, version and rules"],
            [],
        )
    allowed = (
        "pack",
        "version",
        "lang",
        "domain",
        "description",
        "rules",
        "intents",
        "disclosures",
        "neutral",
        "categories",
    )
    check.keys(data, allowed, "file")
    neutral = list(check.strings(data.get("neutral"), _line(data, 1), "neutral"))
    check.string(data, "pack", "file")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        check.fail(version, _line(data, 1), "'version' must be a positive integer")
        version = 0
    file_lang = check.choice(data, "lang", _LANGS, "any", "file")
    rules: list[Rule] = []
    intents: list[IntentRule] = []
    steps: list[DisclosureStep] = []

    def entries(key: str) -> list[Any]:
        raw = data.get(key)
        if raw is None:
            return []
        if not isinstance(raw, list):
            check.fail(raw, _line(data, 1), f"{key!r} must be a list")
            return []
        out = []
        for item in raw:
            if not isinstance(item, dict):
                check.fail(item, _line(raw, _line(data, 1)), f"each entry of {key!r} must be a mapping")
            else:
                out.append(item)
        return out

    def entry_id(item: _Map, kind: str) -> str | None:
        ident = check.string(item, "id", kind)
        if ident is None:
            return None
        if not _ID.fullmatch(ident):  # fullmatch: "$" would accept a trailing newline
            check.fail(ident, _line(item, 1), f"{kind} id {ident!r} may use letters, digits and _ . : - only")
            return None
        where = f"{path.name}:{_line(item, 1)}"
        if ident in seen_ids:
            check.fail(ident, _line(item, 1), f"duplicate id {ident!r} (first at {seen_ids[ident]})")
            return None
        seen_ids[ident] = where
        return ident

    for item in entries("rules"):
        check.keys(
            item,
            ("id", "category", "severity", "channel", "lang", "message", "snippet", "match", "enabled"),
            "rule",
        )
        ident = entry_id(item, "rule")
        category = item.get("category")
        if not isinstance(category, str) or category not in CATEGORIES:  # a list is not a category
            check.fail(
                category,
                _line(item, 1),
                f"rule {ident}: unknown category {category!r} (known: {', '.join(CATEGORIES)})",
            )
            category = None
        severity = item.get("severity", CATEGORIES.get(str(category), "general"))
        if severity not in SEVERITIES:
            check.fail(
                severity, _line(item, 1), f"rule {ident}: severity must be one of {', '.join(SEVERITIES)}"
            )
            severity = "general"
        channel = check.choice(item, "channel", _CHANNELS, "agent", f"rule {ident}")
        lang = check.choice(item, "lang", _LANGS, file_lang, f"rule {ident}")
        message = check.string(item, "message", f"rule {ident}")
        snippet = check.string(item, "snippet", f"rule {ident}", required=False)
        match = check.match(item.get("match"), _line(item, 1), f"rule {ident}")
        if category == "dead_air" and match.timing is None:
            check.fail(item, _line(item, 1), f"rule {ident}: a dead_air rule needs match.timing.silence_s")
        if item.get("enabled", True) is False or None in (ident, category, message):
            continue
        rules.append(Rule(str(ident), str(category), severity, channel, lang, str(message), match, snippet,  # type: ignore[arg-type]
                          f"{path.name}:{_line(item, 1)}"))  # fmt: skip

    for item in entries("intents"):
        check.keys(item, ("id", "intent", "channel", "lang", "match", "confidence", "enabled"), "intent")
        ident = entry_id(item, "intent")
        name = check.string(item, "intent", f"intent {ident}")
        channel = check.choice(item, "channel", _CHANNELS, "customer", f"intent {ident}")
        lang = check.choice(item, "lang", _LANGS, file_lang, f"intent {ident}")
        confidence = item.get("confidence", 0.9)
        if not isinstance(confidence, (int, float)) or not 0 < confidence <= 1:
            check.fail(confidence, _line(item, 1), f"intent {ident}: confidence must be in (0, 1]")
            confidence = 0.9
        match = check.match(item.get("match"), _line(item, 1), f"intent {ident}")
        if item.get("enabled", True) is False or None in (ident, name):
            continue
        intents.append(IntentRule(str(ident), str(name), channel, lang, match, float(confidence),  # type: ignore[arg-type]
                                  f"{path.name}:{_line(item, 1)}"))  # fmt: skip

    for item in entries("disclosures"):
        step_keys = ("id", "step", "lang", "mandatory", "message", "match", "agent_turns", "within_s", "before",
                   "due_when", "by_end", "severity", "enabled")  # fmt: skip
        check.keys(item, step_keys, "disclosure")
        ident = entry_id(item, "disclosure")
        step = check.string(item, "step", f"disclosure {ident}")
        lang = check.choice(item, "lang", _LANGS, file_lang, f"disclosure {ident}")
        message = check.string(item, "message", f"disclosure {ident}")
        match = check.match(item.get("match"), _line(item, 1), f"disclosure {ident}")
        before = (
            check.match(item.get("before"), _line(item, 1), f"disclosure {ident}.before", required=False)
            if "before" in item
            else None
        )
        due_when = (
            check.match(item.get("due_when"), _line(item, 1), f"disclosure {ident}.due_when", required=False)
            if "due_when" in item
            else None
        )
        numbers: dict[str, float | None] = {}
        for key in ("agent_turns", "within_s"):
            value = item.get(key)
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                check.fail(value, _line(item, 1), f"disclosure {ident}: {key} must be a positive number")
                value = None
            numbers[key] = value
        severity = check.choice(item, "severity", SEVERITIES, "serious", f"disclosure {ident}")
        if item.get("enabled", True) is False or None in (ident, step, message):
            continue
        steps.append(DisclosureStep(
            str(ident), str(step), lang, bool(item.get("mandatory", True)), str(message), match,
            int(numbers["agent_turns"]) if numbers["agent_turns"] else None, numbers["within_s"], before, due_when,
            bool(item.get("by_end", False)), severity, f"{path.name}:{_line(item, 1)}",  # type: ignore[arg-type]
        ))  # fmt: skip
    categories: list[Category] = []
    for item in entries("categories"):
        cat_keys = ("id", "label", "kind", "channel", "lang", "definition", "message", "severity", "threshold",
                    "examples", "negatives", "teaches", "enabled")  # fmt: skip
        check.keys(item, cat_keys, "category")
        ident = entry_id(item, "category")
        label = check.string(item, "label", f"category {ident}")
        kind = check.choice(item, "kind", JUDGE_KINDS, "violation", f"category {ident}")
        channel = check.choice(item, "channel", _CHANNELS, "agent", f"category {ident}")
        lang = check.choice(item, "lang", _LANGS, file_lang, f"category {ident}")
        definition = check.string(item, "definition", f"category {ident}", required=kind != "background")
        message = check.string(item, "message", f"category {ident}", required=kind == "violation")
        examples = check.strings(item.get("examples"), _line(item, 1), f"category {ident}.examples")
        negatives = check.strings(item.get("negatives"), _line(item, 1), f"category {ident}.negatives")
        if len(examples) < MIN_EXAMPLES:
            check.fail(item, _line(item, 1), f"category {ident}: {len(examples)} examples; "
                       f"at least {MIN_EXAMPLES} are needed to learn it")  # fmt: skip
        if kind == "violation" and label is not None and label not in CATEGORIES:
            check.fail(label, _line(item, 1), f"category {ident}: unknown violation {label!r} "
                       f"(known: {', '.join(CATEGORIES)})")  # fmt: skip
            label = None
        if kind == "emotion" and label is not None and label not in EMOTION_LABELS:
            check.fail(label, _line(item, 1), f"category {ident}: emotion label must be one of "
                       f"{', '.join(EMOTION_LABELS)}")  # fmt: skip
            label = None
        default_severity = CATEGORIES.get(str(label), "general")
        severity = check.choice(item, "severity", SEVERITIES, default_severity, f"category {ident}")
        threshold = item.get("threshold")
        if threshold is not None and (not isinstance(threshold, (int, float)) or not 0 < threshold < 1):
            check.fail(threshold, _line(item, 1), f"category {ident}: threshold must be a number in (0, 1)")
            threshold = None
        teaches = (
            check.strings(item.get("teaches"), _line(item, 1), f"category {ident}.teaches") or JUDGE_KINDS
        )
        for taught in teaches:
            if taught not in JUDGE_KINDS:
                check.fail(taught, _line(item, 1), f"category {ident}: teaches {taught!r} is not one of "
                           f"{', '.join(JUDGE_KINDS)}")  # fmt: skip
        if item.get("enabled", True) is False or None in (ident, label) or len(examples) < MIN_EXAMPLES:
            continue
        categories.append(Category(
            str(ident), str(label), kind, channel, lang, str(definition or ""), examples, negatives,  # type: ignore[arg-type]
            str(message or ""), severity, float(threshold) if threshold else None,  # type: ignore[arg-type]
            f"{path.name}:{_line(item, 1)}", tuple(teaches),
        ))  # fmt: skip
    return rules, intents, steps, neutral, int(version), check.problems, categories


def load_rules(directory: Path) -> RuleSet:
    """Load and validate every ``*.yaml``/``*.yml`` in ``directory``; raise with all problems found."""
    if not directory.is_dir():
        raise RulePackError([f"{directory}: not a directory of rule files"])
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not files:
        raise RulePackError([f"{directory}: no *.yaml rule files"])
    seen: dict[str, str] = {}
    rules: list[Rule] = []
    intents: list[IntentRule] = []
    steps: list[DisclosureStep] = []
    neutral: list[str] = []
    categories: list[Category] = []
    versions: dict[str, int] = {}
    problems: list[str] = []
    for path in files:
        r, i, s, n, version, errs, c = _load_file(path, seen)
        categories += c
        rules += r
        intents += i
        steps += s
        neutral += n
        versions[path.name] = version
        problems += errs
    problems += _unknown_judge_labels(rules, intents, steps, categories)
    if problems:
        raise RulePackError(problems)
    return RuleSet(
        tuple(rules),
        tuple(intents),
        tuple(steps),
        tuple(neutral),
        versions,
        fingerprint(directory),
        tuple(categories),
    )


def _unknown_judge_labels(
    rules: list[Rule], intents: list[IntentRule], steps: list[DisclosureStep], categories: list[Category]
) -> list[str]:
    """A ``match.judge`` label must be one the pack teaches the judge."""
    known = {c.label for c in categories}
    problems = []
    specs: list[tuple[str, MatchSpec | None]] = [(r.source, r.match) for r in rules]
    specs += [(r.source, r.match) for r in intents]
    specs += [(s.source, m) for s in steps for m in (s.match, s.before, s.due_when)]
    for source, spec in specs:
        for label in spec.judge if spec is not None else ():
            if label not in known:
                problems.append(f"{source}: match.judge label {label!r} has no category in the pack "
                                f"(known: {', '.join(sorted(known)) or 'none'})")  # fmt: skip
    return problems


def fingerprint(directory: Path) -> str:
    """Changes whenever a rule file is added, removed or modified (what hot reload watches)."""
    parts = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        parts.append(f"{path.name}:{st.st_mtime_ns}:{st.st_size}")
    return "|".join(parts)


DEFAULT_PACK = Path(__file__).parent / "packs" / "default"
