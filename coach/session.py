"""One call's coach: raw transcript events in, redacted transcripts and coaching events out.

``process`` is synchronous and may embed text, so callers run it off the event loop (see
``coach.sink``). It is ``redact`` (cheap: the transcript as it may be published) then ``coach``
(matching, embedding, retrieval), which a live call runs later, in its own worker. What reads
the call is the registered detectors (``coach.detectors``), run in their order at each moment
(utterance, final, silence, start and end); the session turns their findings into events. State
per call: the recent finals, what was already alerted (one alert per category and speech segment:
a partial that fired is not repeated by its final), the trackers of the detectors that follow the
call (the checklist, the emotion curve) and what the scorecard needs. The unredacted text never
leaves this object: every transcript and evidence string is redacted before it is returned.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from coach import checklist
from coach.compiled import CompiledRules
from coach.detector import (
    AlertFinding,
    CallEnd,
    Detector,
    EmotionFinding,
    Finding,
    IntentFinding,
    Silence,
    StepFinding,
    Tracker,
    UtteranceContext,
)
from coach.detectors import registered
from coach.judge import JudgeRunner, Reading
from coach.matcher import Units, prepare
from coach.redact_stream import StreamRedactor
from coach.scorecard import AlertRecord, CallSummary, scorecard
from coach.suggestions import SuggestionPolicy
from coach.window import Utterance, Window
from knowledge.embed import Embedder
from sidecar.kernel.events import (
    Alert,
    CallEnded,
    Channel,
    Checklist,
    Emotion,
    Event,
    Intent,
    Suggestion,
    TranscriptFinal,
    TranscriptPartial,
    TranscriptRedacted,
)
from sidecar.kernel.redact import redact
from sidecar.kernel.text import is_chinese

HISTORY = 64  # finals kept for context conditions and the hold lookback
EARLY_WORDS = 10  # committed words of a customer turn before a procedure is looked for
AlertSource = Literal["partial", "final", "timing"]  # what a detector's alert was read on
CONTINUATION_S = 1.5  # a speaker's pause shorter than this, nobody else speaking: one turn cut in two


def _is_transcript(event: Event) -> bool:
    return event.type in ("transcript.partial", "transcript.final") and event.channel is not None


class CoachSession:
    def __init__(
        self,
        call_id: str,
        lang: str,
        rules: CompiledRules,
        embedder: Embedder | None,
        knowledge: SuggestionPolicy[Any] | None = None,
        *,
        judge: JudgeRunner | None = None,
        dead_air: bool = True,
        detectors: Sequence[Detector] | None = None,
    ) -> None:
        self.call_id = call_id
        # silences are coached (off for a text chat: a typing gap is not dead air)
        self.dead_air = dead_air
        # what reads the call, in order: the registered detectors as the call starts (coach.detectors)
        self.detectors = tuple(detectors) if detectors is not None else registered()
        self.judge = judge
        self.judge_misses = 0  # utterances the judge did not read in time (or failed on)
        self.judge_ms: list[float] = []
        self.knowledge = knowledge
        self.knowledge_state: Any = None if knowledge is None else knowledge.initial_state()
        self.early_suggested: set[tuple[str, int]] = set()
        self.lang = lang if lang in ("en", "zh") else "en"
        self.rules = rules
        self.embedder = embedder
        self.history: deque[Utterance] = deque(maxlen=HISTORY)
        self.redactor = StreamRedactor()  # numbers read across utterances
        self.alerted: set[tuple[str, str | None, int]] = set()
        self.intents_seen: set[tuple[str, str | None, int]] = set()
        # the detectors that follow the call (checklist, emotion): one tracker each, and what they
        # found before anyone spoke (published by ``started``)
        self.trackers: dict[str, Tracker] = {}
        self._at_start: list[Finding] = []
        for detector in self.detectors:
            if detector.track is not None:
                self.trackers[detector.name], found = detector.track(rules, self.lang)
                self._at_start += found
        self.last_speech_end = 0.0
        self.speaking: dict[Channel, float | None] = {"agent": None, "customer": None}  # open segment start
        self.silence_alerted: dict[str, float] = {}  # detector name -> the gap start it alerted on
        self.talk_s: dict[Channel, float] = {"agent": 0.0, "customer": 0.0}
        self.alert_log: list[AlertRecord] = []
        self.temperatures: list[tuple[float, float]] = []
        self.steps_done: list[tuple[str, float]] = []
        self.steps_missed: list[tuple[str, float]] = []

    # ------------------------------------------------------------------ entry points

    def use_rules(self, rules: CompiledRules, judge: JudgeRunner | None = None) -> None:
        """Hot reload: later utterances use the new rules (and the judge refitted from them); the
        call's state carries on."""
        self.rules = rules
        self.judge = judge

    def _continued(self, utt: Utterance) -> str | None:
        """The speaker's previous final when this utterance goes on with it: the voice-activity
        detector cut one turn at a short breath ("The pension pot is ring-fenced." / "So whatever
        the markets do, you get it all back.") and the other side said nothing in between."""
        if not self.history:
            return None
        last = self.history[-1]
        if last.channel != utt.channel or utt.t_start - last.t_end > CONTINUATION_S:
            return None
        return last.text

    def _read(self, utt: Utterance, units: Units) -> Reading | None:
        """The judge's reading of an utterance: the whole of it and each sentence. A partial is
        read for the fatal categories only (they must reach the agent before the turn ends)."""
        fatal = self.rules.fatal_labels
        if self.judge is None or (not utt.final and (utt.channel != "agent" or not fatal)):
            return None
        parts = list(units.sentences)
        texts = [utt.text, *parts] if len(parts) > 1 else [utt.text]
        if (before := self._continued(utt)) is not None:  # a claim spread over the cut is read whole
            texts.append(before + ("" if utt.lang == "zh" else " ") + utt.text)
        reading = self.judge.read(texts, utt.channel)
        if reading is None:
            self.judge_misses += 1
            return None
        self.judge_ms.append(reading.elapsed_ms)
        return reading if utt.final else reading.only(fatal)

    def started(self) -> list[Event]:
        now, later = self._found(self._at_start, None, "final", 0.0)
        return now + later

    def process(self, event: Event) -> list[Event]:
        """Everything for one event, in order: ``redact`` then ``coach`` (a replay, or a call
        whose coach keeps up)."""
        return [*self.redact(event), *self.coach(event)]

    def redact(self, event: Event) -> list[Event]:
        """What of ``event`` can be published at once: a transcript redacted, then corrections of
        earlier finals; nothing for other events (``coach`` passes them on). Touches only the
        redactor's state, so it may run while ``coach`` works on an earlier event elsewhere."""
        if _is_transcript(event):
            return self._redacted(event)
        return []

    def coach(self, event: Event) -> list[Event]:
        """The coaching that follows ``redact``: a transcript's alerts, checklist, intents,
        suggestions, emotion; the end's checklist, score and ``call.ended``; other events as
        they are. Events must come in the order they were redacted."""
        if _is_transcript(event):
            return self._transcript(event)
        if event.type == "call.ended":
            assert isinstance(event.payload, CallEnded)
            return [*self._finish(event.t_end), replace(event, payload=self._with_judge_stats(event.payload))]
        return [event]

    def tick(self, now_s: float) -> list[Event]:
        """Live dead-air check while nobody speaks (called every ~0.5 s of call time)."""
        if any(v is not None for v in self.speaking.values()) or not self.history:
            return []
        return self._dead_air(self.last_speech_end, now_s)

    # ------------------------------------------------------------------ transcripts

    def _transcript(self, event: Event) -> list[Event]:
        payload = event.payload
        assert isinstance(payload, TranscriptPartial | TranscriptFinal)
        assert event.channel is not None
        final = isinstance(payload, TranscriptFinal)
        lang = "zh" if is_chinese(payload.text) else "en"
        if lang == "zh":
            self.lang = "zh"
        utt = Utterance(event.channel, payload.text, event.t_start, event.t_end, payload.segment, final, lang,
                        payload.prosody if isinstance(payload, TranscriptFinal) else None)  # fmt: skip
        out: list[Event] = []
        if self.speaking[utt.channel] is None:  # a new segment: was there dead air before it?
            out += self._dead_air(self.last_speech_end, utt.t_start)
        self.speaking[utt.channel] = None if final else utt.t_start
        window = Window(utt, tuple(self.history))
        units = prepare(utt.text, self.embedder if self.rules.semantic else None)
        ctx = UtteranceContext(window, replace(units, reading=self._read(utt, units)), self.rules)
        found: list[Finding] = []
        for detector in self.detectors:
            if detector.utterance is not None:
                findings = detector.utterance(replace(ctx, found=tuple(found)))
                found += findings
                now, later = self._found(findings, utt, "final" if final else "partial")
                out += now + later
        if not final and isinstance(payload, TranscriptPartial):
            out += self._early_suggestion(utt, payload.stable_text)
        if final:
            out += self._final(ctx)
            self.history.append(utt)
            self.talk_s[utt.channel] += max(0.0, utt.t_end - utt.t_start)
            self.last_speech_end = max(self.last_speech_end, utt.t_end)
        return out

    def _final(self, ctx: UtteranceContext) -> list[Event]:
        utt = ctx.window.current
        out: list[Event] = []
        later: list[Event] = []  # the temperature goes out after the procedures it informs
        found: list[Finding] = []
        for detector in self.detectors:
            tracker = self.trackers.get(detector.name)
            step = tracker.final if tracker is not None else detector.final
            if step is None:
                continue
            findings = step(replace(ctx, found=tuple(found)))
            found += findings
            now, after = self._found(findings, utt, "final")
            out += now
            later += after
        if utt.channel == "customer":
            names = [f.rule.rule.intent for f in found if isinstance(f, IntentFinding)]
            out += self._suggest(utt, names)
        return out + later

    def _early_suggestion(self, utt: Utterance, stable: str) -> list[Event]:
        """A long customer turn: once its committed words say enough, look for a procedure
        without waiting for the end of the turn (once per segment; no intent yet, so only a
        confident match is pushed)."""
        key = (utt.channel, utt.segment)
        if utt.channel != "customer" or self.knowledge is None or key in self.early_suggested:
            return []
        words = len(stable) // 2 if utt.lang == "zh" else len(stable.split())
        if words < EARLY_WORDS:
            return []
        self.early_suggested.add(key)
        return self._suggest(replace(utt, text=stable), [])

    def _suggest(self, utt: Utterance, intents: list[str]) -> list[Event]:
        if self.knowledge is None:
            return []
        last_agent = next((u.text for u in reversed(self.history) if u.channel == "agent"), "")
        state, firings = self.knowledge.decide(self.knowledge_state, utt.text, utt.t_end, intents, last_agent)
        self.knowledge_state = state
        out = []
        for firing in firings:
            snippet = self.knowledge.snippet(firing.snippet_id)
            if snippet is None:  # withdrawn since the search
                continue
            reason = redact(firing.reason, utt.lang)
            payload = Suggestion(
                snippet.id, snippet.title, snippet.body, firing.score, reason, snippet.version
            )
            out.append(Event("suggestion", self.call_id, utt.channel, utt.t_start, utt.t_end, payload))
        return out

    def _redacted(self, event: Event) -> list[Event]:
        """The event with its text, stable text and words redacted, read joined to the speaker's
        previous utterances (a number read in pieces), then a ``transcript.redacted`` correction
        for each earlier final that the joined reading had to redact further."""
        payload = event.payload
        assert isinstance(payload, TranscriptPartial | TranscriptFinal)
        assert event.channel is not None
        partial = isinstance(payload, TranscriptPartial)
        texts = [payload.text, payload.stable_text] if partial else [payload.text]  # type: ignore[union-attr]
        red, words, corrections = self.redactor.redact(
            event.channel, event.t_start, payload.segment, payload.lang, texts, payload.words,
            t_end=event.t_end, final=not partial,
        )  # fmt: skip
        new = replace(payload, text=red[0], words=words)
        if isinstance(new, TranscriptPartial):
            new = replace(new, stable_text=red[1])
        out = [replace(event, payload=new)]
        for c in corrections:
            fix = TranscriptRedacted(c.text, c.words, c.lang, c.segment)
            out.append(Event("transcript.redacted", self.call_id, event.channel, c.t_start, c.t_end, fix))
        return out

    # ------------------------------------------------------------------ alerts

    def _found(
        self, findings: Sequence[Finding], utt: Utterance | None, source: AlertSource, t: float = 0.0
    ) -> tuple[list[Event], list[Event]]:
        """One detector's findings as events: those to publish now, and the temperature, which
        goes out after the suggestions. On an utterance, or at time ``t`` (the call's start or end)
        when ``utt`` is None. Each alert once per category and segment, each intent once per name
        and segment; a missed mandatory step's alert after the batch's checklist events."""
        channel = utt.channel if utt is not None else None
        segment = utt.segment if utt is not None else -1
        t_start, t_end = (utt.t_start, utt.t_end) if utt is not None else (t, t)
        now: list[Event] = []
        later: list[Event] = []
        steps: list[checklist.Change] = []
        for finding in findings:
            if isinstance(finding, AlertFinding):
                now += self._alert(finding, channel, segment, source)
            elif isinstance(finding, StepFinding):
                steps.append(finding.change)
                now.append(self._checklist_event(finding.change, t_end))
            elif isinstance(finding, EmotionFinding):
                r = finding.reading
                self.temperatures.append((t_end, r.temperature))
                later.append(Event("emotion", self.call_id, "customer", t_start, t_end,
                                   Emotion(r.temperature, r.utterance, r.label, r.drivers, r.warning)))  # fmt: skip
            else:
                now += self._intent(finding, channel, segment, t_start, t_end, utt.lang if utt else self.lang)
        return now + self._missed_alerts(steps, t_end), later

    def _intent(
        self,
        found: IntentFinding,
        channel: Channel | None,
        segment: int,
        t_start: float,
        t_end: float,
        lang: str,
    ) -> list[Event]:
        intent = found.rule.rule
        key = (intent.intent, channel, segment)
        if key in self.intents_seen:
            return []
        self.intents_seen.add(key)
        payload = Intent(intent.intent, found.confidence, redact(found.hit.evidence, lang), intent.id)
        return [Event("intent", self.call_id, channel, t_start, t_end, payload)]

    def _alert(
        self, finding: AlertFinding, channel: Channel | None, segment: int, source: AlertSource
    ) -> list[Event]:
        key = (finding.category, channel, segment)
        if key in self.alerted:
            return []
        self.alerted.add(key)
        self.alert_log.append(AlertRecord(finding.category, finding.severity, finding.t_end))
        lang = self.lang
        payload = Alert(finding.category, finding.severity, finding.rule_id, finding.message,
                        redact(finding.evidence, lang), None, finding.snippet, source,
                        redact(finding.reason, lang))  # fmt: skip
        return [Event("alert", self.call_id, channel, finding.t_start, finding.t_end, payload)]

    def _dead_air(self, gap_start: float, gap_end: float) -> list[Event]:
        """The silence detectors on a gap in the speech: each alerts at most once per gap."""
        if not self.dead_air or not self.history:
            return []
        waiting = [
            d
            for d in self.detectors
            if d.silence is not None and self.silence_alerted.get(d.name) != gap_start
        ]
        if not waiting:
            return []
        gap = Silence(tuple(self.history), gap_start, gap_end, self.rules, self.history[-1].lang)
        out: list[Event] = []
        for detector in waiting:
            assert detector.silence is not None
            findings = detector.silence(gap)
            if findings:
                self.silence_alerted[detector.name] = gap_start
            for finding in findings:
                out += self._alert(finding, None, -int(gap_start * 1000) - 1, "timing")
        return out

    def _checklist_event(self, change: checklist.Change, t: float) -> Event:
        s = change.status
        if s.state == "done":
            self.steps_done.append((s.step, t))
        elif s.state == "missed":
            self.steps_missed.append((s.step, t))
        state = "due" if s.state == "pending" else s.state
        return Event("checklist", self.call_id, "agent", t, t,
                     Checklist(s.step, state, s.mandatory, redact(s.evidence, self.lang)))  # fmt: skip

    def _missed_alerts(self, changes: list[checklist.Change], t: float) -> list[Event]:
        out = []
        for change in changes:
            if change.alert:
                step = change.spec.step
                self.alert_log.append(AlertRecord("missing_disclosure", step.severity, t))
                out.append(Event("alert", self.call_id, "agent", t, t,
                                 Alert("missing_disclosure", step.severity, step.id, step.message,
                                       redact(change.status.evidence, self.lang), step.step, None, "checklist")))  # fmt: skip
        return out

    def _with_judge_stats(self, ended: CallEnded) -> CallEnded:
        """``call.ended`` says how the judge did on this call: misses (timeouts, failures) and its
        slowest reading, so a degraded call is visible in the call record and the metrics."""
        stats = dict(ended.stats)
        stats["judge_misses"] = float(self.judge_misses)
        stats["judge_readings"] = float(len(self.judge_ms))
        if self.judge_ms:
            stats["judge_ms_max"] = max(self.judge_ms)
        return replace(ended, stats=stats)

    def _finish(self, t_end: float) -> list[Event]:
        out: list[Event] = []
        end = CallEnd(t_end, self.rules, self.lang)
        for tracker in self.trackers.values():
            now, later = self._found(tracker.end(end), None, "final", t_end)
            out += now + later
        summary = CallSummary(
            duration_s=max(t_end, self.last_speech_end),
            agent_talk_s=self.talk_s["agent"],
            customer_talk_s=self.talk_s["customer"],
            alerts=tuple(self.alert_log),
            steps_done=tuple(self.steps_done),
            steps_missed=tuple(self.steps_missed),
            temperatures=tuple(self.temperatures),
        )
        out.append(Event("score", self.call_id, None, 0.0, t_end, scorecard(summary)))
        return out
