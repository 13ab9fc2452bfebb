"""Readable rendering of events for a terminal (``assist demo``)."""

from __future__ import annotations

import sys
from typing import TextIO

from sidecar.events import CallEnded, CallStarted, Event, TranscriptFinal, TranscriptPartial

_COLOURS = {"agent": "\033[36m", "customer": "\033[33m"}
_DIM, _BOLD, _RESET = "\033[2m", "\033[1m", "\033[0m"


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
    assert isinstance(p, TranscriptFinal)
    return f"{stamp} " + paint(_COLOURS.get(event.channel or "", ""), f"{who} {p.text}")


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
