"""The call as the coach sees it: utterances in call time, the current one possibly partial."""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.kernel.events import Channel, Prosody


@dataclass(frozen=True, slots=True)
class Utterance:
    """What one side said in one speech segment. ``text`` is unredacted: it never leaves the coach."""

    channel: Channel
    text: str
    t_start: float
    t_end: float
    segment: int
    final: bool
    lang: str
    prosody: Prosody | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """The current utterance and the finals before it (oldest first, bounded by the session)."""

    current: Utterance
    history: tuple[Utterance, ...]

    def recent(self, turns: int) -> list[str]:
        """Texts of the last ``turns`` utterances, the current one included (for context conditions)."""
        return (
            [u.text for u in self.history[-(turns - 1) :]] + [self.current.text]
            if turns > 1
            else [self.current.text]
        )
