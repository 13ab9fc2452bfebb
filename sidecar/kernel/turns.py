"""A transcript turn as data: who spoke, what they said, and when (seconds of call audio).

A recorded call's transcript (``sidecar.callfile`` reads it from a ``.jsonl``) is a sequence of
these; the knowledge base's dry run (``knowledge.dryrun``) takes them as they are, so it never
reads a call file itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.kernel.events import Channel


@dataclass(frozen=True, slots=True)
class Turn:
    channel: Channel
    text: str
    start_s: float
    end_s: float
