"""The process-wide coach: the rule pack (hot reloaded), the embedder, and one session per call.

Hot reload: ``reload_if_changed`` compares the pack directory's fingerprint (file names, sizes,
mtimes); a changed pack is loaded and validated in full, compiled, then swapped in with one
assignment, and every live session picks it up at its next utterance. A pack with errors is
refused (logged, listed in ``last_error``): the running rules stay in force and no call drops.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

from coach.compiled import CompiledRules, compile_rules
from coach.judge import JudgeRunner, JudgeSettings, budget_s, fit_judge, load_panel, panel_keys
from coach.rules import DEFAULT_PACK, RulePackError, RuleSet, fingerprint, load_rules
from coach.session import CoachSession
from coach.suggestions import SuggestionPolicy
from knowledge.embed import Embedder, load_embedder
from sidecar.kernel.errors import AssistError

log = logging.getLogger(__name__)


class Coach:
    def __init__(
        self,
        rules_dir: Path | None = None,
        *,
        embedder: Embedder | str | None = "embed-e5",
        judge: bool = True,
    ) -> None:
        self.rules_dir = rules_dir or DEFAULT_PACK
        self.embedder = load_embedder(embedder) if isinstance(embedder, str) else embedder
        self._lock = threading.Lock()
        self.judge_enabled = judge
        self.judge_failures = 0  # fits that failed (a model that would not load): exact matchers only
        # a mistyped setting stops the start with its own message (not a quietly missing judge)
        self.judge_settings = JudgeSettings.from_env() if judge else JudgeSettings()
        rules = load_rules(self.rules_dir)
        self.compiled: CompiledRules = compile_rules(rules, self.embedder)
        self.judge: JudgeRunner | None = self._fit_judge(rules)
        self.last_error: RulePackError | None = None
        self.reloads = 0
        self._sessions: dict[str, CoachSession] = {}

    def _fit_judge(self, rules: RuleSet) -> JudgeRunner | None:
        """The judge fitted from the pack's categories; None (and counted) if it cannot be: the
        calls go on with the exact matchers."""
        if not self.judge_enabled or not rules.categories:
            return None
        try:
            judge = fit_judge(rules.categories, load_panel(panel_keys()), settings=self.judge_settings)
        except (AssistError, OSError, ValueError, RuntimeError, ImportError, MemoryError) as exc:
            self.judge_failures += 1
            log.error("judge not fitted (%s): alerts come from the exact matchers only", type(exc).__name__)
            return None
        log.info(
            "judge fitted: %d labels from %d sentences in %.1f s",
            len(judge.label_names()),
            judge.examples,
            judge.fit_s,
        )
        return JudgeRunner(judge, budget_s())

    def session(
        self,
        call_id: str,
        lang: str,
        knowledge: SuggestionPolicy[Any] | None = None,
        *,
        dead_air: bool = True,
    ) -> CoachSession:
        """``dead_air``: coach silences (a live call); off for a text chat, whose typing gaps are not."""
        session = CoachSession(
            call_id, lang, self.compiled, self.embedder, knowledge, judge=self.judge, dead_air=dead_air
        )
        self._sessions[call_id] = session
        return session

    def close_session(self, call_id: str) -> None:
        self._sessions.pop(call_id, None)

    def reload_if_changed(self) -> bool:
        """Load the pack again if its files changed; True when new rules are now in force."""
        with self._lock:
            if fingerprint(self.rules_dir) == self.compiled.source.fingerprint:
                return False
            try:
                rules = load_rules(self.rules_dir)
            except RulePackError as exc:
                if self.last_error is None or exc.problems != self.last_error.problems:
                    log.error("rule pack %s not reloaded: %s", self.rules_dir, "; ".join(exc.problems))
                self.last_error = exc
                return False
            compiled = compile_rules(rules, self.embedder)
            judge = (
                self._fit_judge(rules) if rules.categories != self.compiled.source.categories else self.judge
            )
            self.compiled, self.judge = compiled, judge
            self.last_error = None
            self.reloads += 1
            for session in list(self._sessions.values()):
                session.use_rules(self.compiled, self.judge)
            log.info("rule pack %s reloaded: %s", self.rules_dir, rules.versions)
            return True

    async def watch(self, interval_s: float = 1.0) -> None:
        """Poll the pack directory until cancelled (compiling runs in a worker thread)."""
        while True:
            await asyncio.sleep(interval_s)
            await asyncio.to_thread(self.reload_if_changed)
