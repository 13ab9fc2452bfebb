"""Readable rendering of events for a terminal (``assist demo``)."""

from __future__ import annotations

import sys
from typing import TextIO

from sidecar.kernel.events import (
    Alert,
    CallEnded,
    CallStarted,
    Checklist,
    Emotion,
    Event,
    Intent,
    Score,
    Suggestion,
    TranscriptFinal,
    TranscriptPartial,
    TranscriptRedacted,
    Whisper,
)

_COLOURS = {"agent": "\033[36m", "customer": "\033[33m"}
_DIM, _BOLD, _RESET = "\033[2m", "\033[1m", "\033[0m"
_SEVERITY = {"fatal": "\033[1;31m", "serious": "\033[31m", "general": "\033[35m"}


def render(event: Event, colour: bool = False) -> str | None:
    """One line for an event, or None for events not worth a line."""

    def paint(code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if colour else text

    stamp = f"[{event.t_end:7.2f}s]"
    p = event.payload
    if isinstance(p, CallStarted):
        return paint(_BOLD, f"{stamp} call {event.call_id} started: {p.source} (lang {p.lang})")
    if isinstance(p, CallEnded):
        dropped = int(p.stats.get("frames_dropped", 0))
        return paint(
            _BOLD, f"{stamp} call ended ({p.reason}) after {p.duration_s:.1f} s, {dropped} frames dropped"
        )
    who = (event.channel or "?").upper().ljust(8)
    if isinstance(p, TranscriptPartial):
        return paint(_DIM, f"{stamp} {who} … {p.text}")
    if isinstance(p, TranscriptFinal):
        return f"{stamp} " + paint(_COLOURS.get(event.channel or "", ""), f"{who} {p.text}")
    if isinstance(p, TranscriptRedacted):
        return paint(_DIM, f"{stamp} {who} (segment {p.segment} redacted) {p.text}")
    if isinstance(p, Alert):
        what = p.step or p.category
        return paint(_SEVERITY.get(p.severity, _BOLD), f"{stamp} ! {p.severity.upper()} {what}: {p.message}"
                     + (f"  «{p.evidence}»" if p.evidence else ""))  # fmt: skip
    if isinstance(p, Checklist):
        return None if p.state == "due" else paint(_DIM, f"{stamp}   checklist {p.step}: {p.state}")
    if isinstance(p, Intent):
        return paint(_DIM, f"{stamp}   intent {p.intent} ({p.confidence:.2f})")
    if isinstance(p, Emotion):
        bar = "▁▂▃▄▅▆▇█"[min(7, max(0, round((p.temperature + 1) * 3.5)))]
        note = " WARNING: falling fast" if p.warning else ""
        return paint(_DIM, f"{stamp}   customer {bar} {p.temperature:+.2f} {p.label}{note}")
    if isinstance(p, Suggestion):
        return paint(_BOLD, f"{stamp} → {p.title} ({p.reason})")
    if isinstance(p, Whisper):
        return paint(_BOLD, f"{stamp} supervisor ({p.author}): {p.text}")
    assert isinstance(p, Score)
    return paint(
        _BOLD,
        f"{stamp} QA score {p.total:.0f}/100 " + ", ".join(f"{k} {v:.0f}" for k, v in p.sections.items()),
    )


def print_readable(event: Event, out: TextIO = sys.stdout) -> None:
    """On a terminal a partial is redrawn in place until its final replaces it."""
    tty = out.isatty()
    line = render(event, colour=tty)
    if line is None:
        return
    if tty:
        end = "" if isinstance(event.payload, TranscriptPartial) else "\n"
        out.write("\r\033[K" + line + end)
    else:
        out.write(line + "\n")
    out.flush()
