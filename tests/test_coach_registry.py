"""The detector registry: a detector defined here, registered, runs in a real ``CoachSession``
(session.py untouched) and is gone once unregistered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coach import checklist, dead_air, emotion, intents, violations
from coach.compiled import CompiledRules
from coach.detector import AlertFinding, CallEnd, Detector, Silence, UtteranceContext
from coach.detectors import BUILT_IN, register, registered, unregister
from coach.engine import Coach
from coach.session import CoachSession
from sidecar.kernel.events import Alert, CallStarted, Channel, Event, TranscriptFinal, TranscriptPartial

pytestmark = pytest.mark.unit


def shouting(ctx: UtteranceContext) -> list[AlertFinding]:
    """An agent who types or says a whole sentence in capitals is shouting."""
    utt = ctx.window.current
    letters = [c for c in utt.text if c.isalpha()]
    if utt.channel != "agent" or len(letters) < 8 or not all(c.isupper() for c in letters):
        return []
    return [
        AlertFinding(
            "shouting",
            "general",
            "test.shouting",
            "Lower your voice.",
            utt.text,
            "all capitals",
            utt.t_start,
            utt.t_end,
        )
    ]


def long_silence(gap: Silence) -> list[AlertFinding]:
    if gap.gap_end - gap.gap_start < 40.0:
        return []
    return [AlertFinding("long_silence", "serious", "test.long_silence", "Still there?", "", "40 s",
                         gap.gap_start, gap.gap_end)]  # fmt: skip


@pytest.fixture(scope="module")
def coach() -> Coach:
    return Coach(embedder=None, judge=False)  # exact matchers only: no model to load


@pytest.fixture
def with_test_detectors() -> Iterator[None]:
    register(Detector("shouting", utterance=shouting))
    register(Detector("long_silence", silence=long_silence))
    try:
        yield
    finally:
        unregister("shouting")
        unregister("long_silence")


def started(session: CoachSession) -> None:
    session.process(
        Event("call.started", "c1", None, 0, 0, CallStarted("c1", "en", ("agent", "customer"), False))
    )


def final(session: CoachSession, channel: Channel, text: str, t0: float, t1: float, seg: int) -> list[Event]:
    return session.process(
        Event("transcript.final", "c1", channel, t0, t1, TranscriptFinal(text, (), "en", seg))
    )


def alerts(events: list[Event]) -> list[Alert]:
    """The detectors' alerts (not the disclosure checklist's)."""
    return [e.payload for e in events if isinstance(e.payload, Alert) and e.payload.source != "checklist"]


def test_the_built_in_detectors_run_in_a_fixed_order() -> None:
    assert BUILT_IN == (
        violations.DETECTOR,
        checklist.DETECTOR,
        intents.DETECTOR,
        emotion.DETECTOR,
        dead_air.DETECTOR,
    )
    assert [d.name for d in registered()] == ["violations", "checklist", "intents", "emotion", "dead_air"]


def test_a_registered_detector_alerts_from_a_real_session(coach: Coach, with_test_detectors: None) -> None:
    session = coach.session("c1", "en")
    assert [d.name for d in session.detectors] == [
        "violations",
        "checklist",
        "intents",
        "emotion",
        "dead_air",
        "shouting",
        "long_silence",
    ]
    started(session)
    assert alerts(final(session, "agent", "Thank you for calling, how can I help?", 0.0, 2.0, 1)) == []

    partial = TranscriptPartial("I AM CHECKING YOUR ORDER", "I AM CHECKING", (), "en", 2)
    events = session.process(Event("transcript.partial", "c1", "agent", 3.0, 4.0, partial))
    [alert] = alerts(events)
    assert (alert.category, alert.severity, alert.rule_id, alert.source) == (
        "shouting",
        "general",
        "test.shouting",
        "partial",
    )
    # its final is the same segment: alerted once
    assert alerts(final(session, "agent", "I AM CHECKING YOUR ORDER NOW", 3.0, 6.0, 2)) == []

    # a built-in detector and the registered one on the same utterance, in registry order
    events = final(session, "agent", "YOU IDIOT, LISTEN TO ME", 7.0, 9.0, 3)
    assert [a.category for a in alerts(events)] == ["abuse", "shouting"]
    # evidence is redacted by the session, whoever found it
    shouted = final(session, "agent", "MY CARD NUMBER IS 4111 1111 1111 1111 OKAY", 10.0, 12.0, 4)
    assert [a.category for a in alerts(shouted)] == ["privacy_leak", "shouting"]
    evidence = alerts(shouted)[1].evidence
    assert "4111 1111" not in evidence
    assert "1111" in evidence  # the last four digits stay

    # silence detectors: the built-in dead air at 12 s, the registered one at 40 s, each once per gap
    tick = session.tick(30.0)
    assert [(a.category, a.source) for a in alerts(tick)] == [("dead_air", "timing")]
    assert [a.category for a in alerts(session.tick(55.0))] == ["long_silence"]
    assert session.tick(60.0) == []


def test_an_unregistered_detector_no_longer_runs(coach: Coach) -> None:
    register(Detector("shouting", utterance=shouting))
    with pytest.raises(ValueError, match="already registered"):
        register(Detector("shouting", utterance=shouting))
    unregister("shouting")
    session = coach.session("c2", "en")
    started(session)
    assert alerts(final(session, "agent", "I AM CHECKING YOUR ORDER NOW", 0.0, 2.0, 1)) == []
    with pytest.raises(KeyError):
        unregister("shouting")


def test_a_session_can_be_given_its_own_detectors(coach: Coach) -> None:
    session = CoachSession(
        "c3", "en", coach.compiled, None, detectors=[Detector("shouting", utterance=shouting)]
    )
    started(session)
    events = final(session, "agent", "YOU IDIOT, LISTEN TO ME", 0.0, 2.0, 1)
    assert [a.category for a in alerts(events)] == ["shouting"]  # the built-in violations do not run


class Apologies:
    """A detector that follows the call: the third apology of the agent is one too many."""

    def __init__(self) -> None:
        self.count = 0

    def final(self, ctx: UtteranceContext) -> list[AlertFinding]:
        utt = ctx.window.current
        if utt.channel != "agent" or "sorry" not in utt.text.lower():
            return []
        self.count += 1
        if self.count != 3:
            return []
        return [
            AlertFinding(
                "over_apologising", "general", "test.sorry", "Fewer apologies, more solutions.", utt.text,
                "third apology", utt.t_start, utt.t_end,
            )
        ]  # fmt: skip

    def end(self, end: CallEnd) -> list[AlertFinding]:
        return []


def track_apologies(rules: CompiledRules, lang: str) -> tuple[Apologies, list[AlertFinding]]:
    return Apologies(), []


def test_a_registered_tracker_follows_its_call(coach: Coach) -> None:
    register(Detector("apologies", track=track_apologies))
    try:
        first, second = coach.session("c4", "en"), coach.session("c5", "en")
    finally:
        unregister("apologies")
    started(first)
    started(second)
    found = []
    for i in range(4):
        found += alerts(final(first, "agent", "I am sorry about that.", 2.0 * i, 2.0 * i + 1, i + 1))
    assert [(a.category, a.source) for a in found] == [("over_apologising", "final")]
    assert found[0].evidence == "I am sorry about that."
    # each call has its own tracker
    assert alerts(final(second, "agent", "I am sorry about that.", 0.0, 1.0, 1)) == []
    with pytest.raises(ValueError, match="through its tracker only"):
        Detector("both", utterance=shouting, track=track_apologies)
