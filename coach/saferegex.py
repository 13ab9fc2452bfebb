"""Rule-pack regexes on a linear-time engine (RE2): no pattern, however written, can make a match
take more than time proportional to the text, so a published rule can never freeze the service.

RE2 runs what Python's ``re`` runs except backreferences and lookaround (``(?<!...)``,
``(?=...)``); a pattern that needs them is refused when the pack is validated, with a hint.
``\\b``, ``\\w``, ``\\d`` and ``\\s`` are ASCII in RE2 (Python's are Unicode): the coach matches
regexes on normalised text (NFKC, so full-width digits are ASCII digits), and Chinese patterns
use character classes or explicit alternatives rather than ``\\w``.
"""

from __future__ import annotations

from typing import Protocol

import re2

MAX_PATTERN_CHARS = 4_000  # a rule's regex; longer ones are refused (RE2's memory budget still applies)
MAX_PROGRAM_BYTES = 8 << 20  # RE2's memory budget for one compiled pattern

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported to the author, not printed by RE2
_OPTIONS.max_mem = MAX_PROGRAM_BYTES


class UnsafePatternError(ValueError):
    """A pattern the linear-time engine cannot run (or that is not a regular expression at all)."""


class RulePattern(Protocol):
    """What the matcher uses of a compiled rule regex."""

    @property
    def pattern(self) -> str: ...

    def search(self, text: str) -> object | None: ...


_HINTS = {
    "(?<": "lookbehind is not supported: write (?:^|[^x]) instead of (?<![x])",
    "(?=": "lookahead is not supported: match the following text instead",
    "(?!": "negative lookahead is not supported: write (?:[^x]|$) instead of (?![x])",
    "\\1": "backreferences are not supported",
}


def compile_rule_regex(pattern: str) -> RulePattern:
    """Compile ``pattern`` for RE2, or raise ``UnsafePatternError`` saying why not."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise UnsafePatternError(f"longer than {MAX_PATTERN_CHARS} characters")
    try:
        compiled: RulePattern = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        hint = next((h for token, h in _HINTS.items() if token in pattern), "")
        raise UnsafePatternError(f"{reason}{f' ({hint})' if hint else ''}") from None
    return compiled
