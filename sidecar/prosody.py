"""Prosody of one speech segment from its samples: loudness, pitch, syllable rate.

Pure numpy (no model): FFT autocorrelation pitch over 40 ms frames, RMS loudness, and energy
peaks per second as a syllable-rate proxy. Inputs for the customer-emotion work, which compares
them with the caller's own baseline.
"""

from __future__ import annotations

import numpy as np

from sidecar.audio import PIPELINE_RATE, Float32
from sidecar.kernel.events import Prosody

_FRAME = 640  # 40 ms at 16 kHz
_HOP = 160  # 10 ms
_F0_MIN, _F0_MAX = 60.0, 400.0
_VOICED_CORR = 0.45
_SILENCE_DB = -50.0


def _db(x: float) -> float:
    return float(20.0 * np.log10(max(x, 1e-10)))


def _frames(signal: Float32, size: int, hop: int) -> Float32:
    if signal.size < size:
        return np.zeros((0, size), dtype=np.float32)
    n = 1 + (signal.size - size) // hop
    idx = np.arange(size)[None, :] + hop * np.arange(n)[:, None]
    return np.asarray(signal[idx], dtype=np.float32)


def measure_prosody(audio: Float32, sample_rate: int = PIPELINE_RATE) -> Prosody:
    duration = audio.size / sample_rate
    frames = _frames(audio, _FRAME, _HOP)
    if frames.shape[0] == 0:
        return Prosody(duration, _SILENCE_DB, _SILENCE_DB, 0.0, 0.0, 0.0, 0.0)
    rms = np.sqrt(np.mean(frames**2, axis=1) + 1e-12)
    rms_db = 20.0 * np.log10(rms)
    active = rms_db > max(_SILENCE_DB, float(rms_db.max()) - 30.0)
    loudness = _db(float(np.sqrt(np.mean(rms[active] ** 2)))) if active.any() else _SILENCE_DB
    f0 = _pitch_track(frames, active, sample_rate)
    voiced = f0 > 0
    if voiced.any():
        pitch = float(np.median(f0[voiced]))
        lo, hi = np.percentile(f0[voiced], [10, 90])
        pitch_range = float(12.0 * np.log2(hi / lo)) if lo > 0 else 0.0
    else:
        pitch, pitch_range = 0.0, 0.0
    active_s = float(active.sum()) * _HOP / sample_rate
    return Prosody(
        duration_s=duration,
        loudness_db=loudness,
        peak_db=_db(float(np.max(np.abs(audio)))),
        pitch_hz=pitch,
        pitch_range_st=pitch_range,
        voiced_ratio=float(voiced.sum() / max(1, active.sum())),
        syllable_rate=_count_peaks(rms_db, active) / active_s if active_s > 0 else 0.0,
    )


def _pitch_track(frames: Float32, active: np.ndarray, sample_rate: int) -> Float32:
    """F0 per frame (0 for unvoiced) by normalised autocorrelation."""
    f0 = np.zeros(frames.shape[0], dtype=np.float32)
    if not active.any():
        return f0
    x = frames[active] - frames[active].mean(axis=1, keepdims=True)
    x = x * np.hanning(_FRAME).astype(np.float32)
    spec = np.fft.rfft(x, n=2 * _FRAME, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :_FRAME]
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    lo, hi = int(sample_rate / _F0_MAX), int(sample_rate / _F0_MIN)
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    peak = ac[np.arange(ac.shape[0]), lag]
    f0[np.flatnonzero(active)] = np.where(peak >= _VOICED_CORR, sample_rate / lag, 0.0)
    return f0


def _count_peaks(level_db: np.ndarray, active: np.ndarray) -> int:
    """Energy peaks at least 100 ms apart and 3 dB above the valley before them."""
    smooth = np.convolve(level_db, np.ones(5) / 5, mode="same")
    peaks, last, valley = 0, -10, float("inf")
    for i in range(1, smooth.size - 1):
        valley = min(valley, smooth[i])
        is_peak = smooth[i] >= smooth[i - 1] and smooth[i] > smooth[i + 1]
        if is_peak and active[i] and i - last >= 10 and smooth[i] - valley >= 3.0:
            peaks, last, valley = peaks + 1, i, float("inf")
    return peaks
