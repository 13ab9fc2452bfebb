"""Voice activity: silero-vad (ONNX, through onnxruntime) plus a pure segmenting state machine.

``SileroVad`` holds the model session (shared by every stream; onnxruntime sessions are
thread-safe). ``VadStream`` carries one channel's recurrent state and 64-sample context; the
live path runs every channel's frames together through ``sidecar.vad_batch`` (one ONNX run per
round, off the event loop), which gives the same probabilities as one stream at a time.
``SpeechSegmenter`` turns per-frame speech probabilities into segment start/end transitions
and is a pure, deterministic core (unit-tested on probability lists).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from sidecar.audio import PIPELINE_RATE, Float32

FRAME_SAMPLES = 512  # silero at 16 kHz: 32 ms per frame
FRAME_S = FRAME_SAMPLES / PIPELINE_RATE
_CONTEXT = 64


class SileroVad:
    def __init__(self, model_path: Path, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._sr = np.array(PIPELINE_RATE, dtype=np.int64)

    def stream(self) -> VadStream:
        return VadStream(self)

    def run(self, window: Float32, state: Float32) -> tuple[float, Float32]:
        prob, new_state = self._session.run(None, {"input": window[None, :], "state": state, "sr": self._sr})
        return float(prob[0, 0]), np.asarray(new_state, dtype=np.float32)

    def run_batch(self, windows: Float32, states: Float32) -> tuple[Float32, Float32]:
        """One frame of each of B streams: windows (B, 576), states (2, B, 128) in; the B
        probabilities and the new states out (the model's batch axis: equal to B single runs)."""
        probs, new_states = self._session.run(None, {"input": windows, "state": states, "sr": self._sr})
        return np.asarray(probs, dtype=np.float32)[:, 0], np.asarray(new_states, dtype=np.float32)


class VadStream:
    """One channel's VAD state. ``probability`` takes exactly one 512-sample frame."""

    def __init__(self, model: SileroVad) -> None:
        self._model = model
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    @property
    def model(self) -> SileroVad:
        return self._model

    @property
    def state(self) -> Float32:
        return self._state

    def window(self, frame: Float32) -> Float32:
        """What the model reads for ``frame``: the previous frame's tail, then the frame."""
        if frame.shape != (FRAME_SAMPLES,):
            raise ValueError(f"VAD frames are {FRAME_SAMPLES} samples, got {frame.shape}")
        return np.concatenate([self._context, frame])

    def advance(self, frame: Float32, state: Float32) -> None:
        """``frame`` has been read; ``state`` is the model's state after it."""
        self._state = state
        self._context = frame[-_CONTEXT:]

    def probability(self, frame: Float32) -> float:
        prob, state = self._model.run(self.window(frame), self._state)
        self.advance(frame, state)
        return prob

    async def probabilities(self, frames: Sequence[Float32]) -> list[float]:
        """``VadChannel`` inline, on the caller's thread (the batched path is ``sidecar.vad_batch``)."""
        return [self.probability(f) for f in frames]


class VadChannel(Protocol):
    """One channel's VAD as the transcriber uses it: consecutive frames in, one probability each."""

    async def probabilities(self, frames: Sequence[Float32]) -> list[float]: ...


@dataclass(frozen=True, slots=True)
class VadConfig:
    threshold: float = 0.5  # enter speech at or above
    neg_threshold: float = 0.35  # leave speech after min_silence below this
    min_silence_s: float = 0.3  # the end-of-segment hangover: finalisation waits this long
    min_speech_s: float = 0.25  # shorter bursts are dropped (clicks, breaths)
    start_pad_s: float = 0.3  # audio kept before the first voiced frame (onsets score low)
    end_pad_s: float = 0.25  # ... and after the last one (within the hangover: costs no latency)


@dataclass(frozen=True, slots=True)
class SpeechStart:
    t: float  # padded start, seconds of channel audio


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    t_start: float
    t_end: float  # padded end
    keep: bool  # False: too short to be speech, drop it


VadTransition = SpeechStart | SpeechEnd


class SpeechSegmenter:
    """Per-frame probabilities in, segment transitions out. Times are frame starts in seconds."""

    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig()
        self._in_speech = False
        self._start = 0.0
        self._last_voiced_end = 0.0
        self._silence_s = 0.0
        self._t = 0.0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def silence_s(self) -> float:
        """How long the open segment has been below ``neg_threshold`` (0 while voiced)."""
        return self._silence_s if self._in_speech else 0.0

    def feed(self, prob: float, frame_s: float = FRAME_S) -> VadTransition | None:
        cfg, t = self.config, self._t
        self._t += frame_s
        if not self._in_speech:
            if prob >= cfg.threshold:
                self._in_speech = True
                self._start = max(0.0, t - cfg.start_pad_s)
                self._last_voiced_end = t + frame_s
                self._silence_s = 0.0
                return SpeechStart(self._start)
            return None
        if prob >= cfg.neg_threshold:
            self._last_voiced_end = t + frame_s
            self._silence_s = 0.0
            return None
        self._silence_s += frame_s
        if self._silence_s + 1e-9 < cfg.min_silence_s:
            return None
        return self._close(min(self._t, self._last_voiced_end + cfg.end_pad_s))

    def flush(self) -> SpeechEnd | None:
        """End of input: close an open segment at the last voiced frame."""
        if not self._in_speech:
            return None
        return self._close(min(self._t, self._last_voiced_end + self.config.end_pad_s))

    def cut(self, t: float) -> None:
        """A segment was split at ``t`` by the caller (too long): the open one continues from there."""
        self._start = t

    def _close(self, end: float) -> SpeechEnd:
        self._in_speech = False
        voiced = self._last_voiced_end - (self._start + self.config.start_pad_s)
        return SpeechEnd(self._start, end, keep=voiced >= self.config.min_speech_s)
