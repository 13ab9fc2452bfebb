"""The unit of audio between a tap and the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.audio import PIPELINE_RATE, Pcm16
from sidecar.kernel.events import Channel


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """int16 mono samples at 16 kHz of one channel, starting ``t0`` seconds into the call."""

    call_id: str
    channel: Channel
    pcm: Pcm16
    t0: float

    @property
    def duration_s(self) -> float:
        return self.pcm.size / PIPELINE_RATE
