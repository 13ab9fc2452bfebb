"""The required-disclosure checklist: a pure state machine over the agent's final utterances.

Each step starts ``pending`` (conditional steps, until ``due_when`` matches) or ``due``; it becomes
``done`` when the agent says it, or ``missed`` when its deadline passes (the agent's first
``agent_turns`` turns, ``within_s`` seconds of call time), when the agent does what it must come
before (``before``: account details before identity verification, an investment pitch before the
risk disclosure), or at the end of the call for ``by_end`` steps. ``done`` is checked before
``before`` on the same utterance ("our fund ..., but investments can fall as well as rise" is done).
Only finals move the checklist: a partial has not yet said what the end of the sentence may add.
``DETECTOR`` is how the session runs it (``coach.detectors``): one ``ChecklistTracker`` per call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from coach.compiled import CompiledRules, CompiledStep
from coach.detector import CallEnd, Detector, StepFinding, UtteranceContext
from coach.matcher import Units
from coach.window import Window

StepState = Literal["pending", "due", "done", "missed"]


@dataclass(frozen=True, slots=True)
class StepStatus:
    step: str
    state: StepState
    mandatory: bool
    evidence: str = ""
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class ChecklistState:
    steps: Mapping[str, StepStatus]
    agent_turns: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """A step that changed state; ``alert`` when a mandatory step was missed."""

    status: StepStatus
    spec: CompiledStep

    @property
    def alert(self) -> bool:
        return self.status.state == "missed" and self.status.mandatory


def initial_checklist(rules: CompiledRules, lang: str) -> tuple[ChecklistState, list[Change]]:
    steps: dict[str, StepStatus] = {}
    changes: list[Change] = []
    for spec in _steps(rules, lang):
        state: StepState = "pending" if spec.due_when is not None else "due"
        status = StepStatus(spec.step.step, state, spec.step.mandatory)
        steps[spec.step.step] = status
        if state == "due":
            changes.append(Change(status, spec))
    return ChecklistState(steps), changes


def _steps(rules: CompiledRules, lang: str) -> list[CompiledStep]:
    seen: set[str] = set()
    out = []
    for spec in rules.steps:
        if spec.step.lang in ("any", lang) and spec.step.step not in seen:
            seen.add(spec.step.step)
            out.append(spec)
    return out


def advance(
    state: ChecklistState, window: Window, units: Units, rules: CompiledRules
) -> tuple[ChecklistState, list[Change]]:
    """The checklist after a final utterance (either side: a customer's words can make a step due)."""
    utt = window.current
    steps = dict(state.steps)
    changes: list[Change] = []
    agent = utt.channel == "agent"
    turns = state.agent_turns + (1 if agent else 0)

    def move(spec: CompiledStep, new: StepState, evidence: str) -> None:
        status = StepStatus(spec.step.step, new, spec.step.mandatory, evidence, utt.t_end)
        steps[spec.step.step] = status
        changes.append(Change(status, spec))

    for spec in _steps(rules, utt.lang):  # the step names are shared by every language's rules
        current = steps.get(spec.step.step)
        if current is None:
            current = StepStatus(
                spec.step.step, "pending" if spec.due_when is not None else "due", spec.step.mandatory
            )
        if current.state in ("done", "missed"):
            continue
        if current.state == "pending" and spec.due_when is not None and (hit := spec.due_when.match(units)):
            move(spec, "due", hit.evidence)
            current = steps[spec.step.step]
        if not agent:
            continue
        if current.state == "pending":  # did what it must precede before the topic was even raised
            if spec.before is not None and (hit := spec.before.match(units)) is not None:
                move(spec, "missed", hit.evidence)
            continue
        if (hit := spec.matcher.match(units)) is not None:
            move(spec, "done", hit.evidence)
            continue
        s = spec.step
        late = (s.agent_turns is not None and turns >= s.agent_turns) or (
            s.within_s is not None and utt.t_end > s.within_s
        )
        if late and current.state == "due":
            move(spec, "missed", f"not said in the agent's first {s.agent_turns} turns" if s.agent_turns else
                 f"not said in the first {s.within_s:g} s")  # fmt: skip
            continue
        if spec.before is not None and (hit := spec.before.match(units)) is not None:
            move(spec, "missed", hit.evidence)
    return replace(state, steps=steps, agent_turns=turns), changes


def finish(state: ChecklistState, rules: CompiledRules, lang: str, t_end: float) -> list[Change]:
    """End of call: ``by_end`` steps still due are missed."""
    changes = []
    for spec in _steps(rules, lang):
        current = state.steps.get(spec.step.step)
        if spec.step.by_end and current is not None and current.state == "due":
            status = StepStatus(spec.step.step, "missed", spec.step.mandatory, "the call ended first", t_end)
            changes.append(Change(status, spec))
    return changes


class ChecklistTracker:
    """One call's checklist: ``advance`` on each final, ``finish`` at the end."""

    def __init__(self, state: ChecklistState) -> None:
        self.state = state

    def final(self, ctx: UtteranceContext) -> list[StepFinding]:
        self.state, changes = advance(self.state, ctx.window, ctx.units, ctx.rules)
        return [StepFinding(c) for c in changes]

    def end(self, end: CallEnd) -> list[StepFinding]:
        return [StepFinding(c) for c in finish(self.state, end.rules, end.lang, end.t_end)]


def _track(rules: CompiledRules, lang: str) -> tuple[ChecklistTracker, list[StepFinding]]:
    state, changes = initial_checklist(rules, lang)
    return ChecklistTracker(state), [StepFinding(c) for c in changes]


DETECTOR = Detector("checklist", track=_track)
