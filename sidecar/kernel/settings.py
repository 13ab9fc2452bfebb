"""Process settings from the environment (``ASSIST_*``), validated once at start-up.

Model *paths* are overridden per model in ``models.registry`` (``ASSIST_ASR_EN_MODEL`` ...);
these are the knobs for how models run and how the stream behaves.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sidecar.kernel.errors import ConfigError


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default).strip() or default


def _int(name: str, default: int, lo: int, hi: int) -> int:
    raw = _env(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected an integer") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={value}: expected {lo}..{hi}")
    return value


def _float(name: str, default: float, lo: float, hi: float) -> float:
    raw = _env(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={value}: expected {lo}..{hi}")
    return value


def usable_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may use, not the machine's: its CPU affinity (``taskset``, a
    cpuset), capped by a cgroup v2 CPU quota (a container's CPU limit, ``cpu.max``), at least 1.
    Thread pools sized by the machine's count oversubscribe a pod given 1 of a node's 32 cores."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            n = min(n, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError, ZeroDivisionError):
        pass  # no cgroup v2 quota here
    return max(1, n)


def default_workers() -> int:
    """Concurrent decodes: one per usable core, at most 4 (more cores: set ASSIST_ASR_WORKERS)."""
    return max(1, min(4, usable_cores()))


@dataclass(frozen=True, slots=True)
class AsrSettings:
    device: str = "cpu"  # "cuda" on a GPU worker
    compute_type: str = "int8"  # "float16" / "int8_float16" on GPU
    # One thread per decode and one decode per core at once: on 2 cores, compute per call went from
    # 0.26-0.28 (2 threads, 1 worker) to 0.17 of call duration, the same WER, and finals sooner
    # (bench/asr_stream.py; see the README). Decodes are short: they scale better side by side.
    cpu_threads: int = 1
    workers: int = field(default_factory=default_workers)  # concurrent decodes (pool + CTranslate2)
    beam_size: int = 1
    english_model: Literal["asr-en", "asr-multilingual"] = "asr-en"
    # Decodes waiting while every worker is busy run as one CTranslate2 batch of up to this many
    # (sidecar/decode_batch.py; 1: one by one). Each gets the transcript it gets alone.
    batch: int = 1

    @classmethod
    def from_env(cls) -> AsrSettings:
        english = _env("ASSIST_ASR_ENGLISH", "asr-en")
        if english not in ("asr-en", "asr-multilingual"):
            raise ConfigError(f"ASSIST_ASR_ENGLISH={english!r}: expected asr-en or asr-multilingual")
        return cls(
            device=_env("ASSIST_ASR_DEVICE", "cpu"),
            compute_type=_env("ASSIST_ASR_COMPUTE_TYPE", "int8"),
            cpu_threads=_int("ASSIST_ASR_THREADS", 1, 1, 64),
            workers=_int("ASSIST_ASR_WORKERS", default_workers(), 1, 64),
            beam_size=_int("ASSIST_ASR_BEAM", 1, 1, 10),
            batch=_int("ASSIST_ASR_BATCH", 1, 1, 256),
            english_model="asr-en" if english == "asr-en" else "asr-multilingual",
        )


@dataclass(frozen=True, slots=True)
class StreamSettings:
    partial_interval_s: float = 1.0  # decode the open segment after this much new speech
    # ... in Mandarin (the multilingual model: each pass costs about 3x tiny.en's): 2 s halves
    # the partial passes, compute 0.50 -> 0.36 of call duration, the same finals (chosen on dev)
    partial_interval_zh_s: float = 2.0
    first_partial_s: float = 0.6  # ... but not before the segment is this long
    max_segment_s: float = 15.0  # longer speech is finalised in pieces
    vad_min_silence_s: float = 0.3  # end-of-segment hangover
    queue_s: float = 10.0  # audio a channel may buffer before the drop policy applies
    context_s: float = 8.0  # the channel's last finalised speech decoded again as each final's context
    # ... in Mandarin none: on dev's Kokoro renders 8 s of context bought CER 0.096 against 0.105
    # and cost finalisation delay p95 1.84 s against 0.97 s and compute 0.36 against 0.30
    context_zh_s: float = 0.0

    @classmethod
    def from_env(cls) -> StreamSettings:
        return cls(
            partial_interval_s=_float("ASSIST_PARTIAL_INTERVAL_S", 1.0, 0.2, 10.0),
            partial_interval_zh_s=_float("ASSIST_PARTIAL_INTERVAL_ZH_S", 2.0, 0.2, 10.0),
            first_partial_s=_float("ASSIST_FIRST_PARTIAL_S", 0.6, 0.1, 10.0),
            max_segment_s=_float("ASSIST_MAX_SEGMENT_S", 15.0, 3.0, 28.0),
            vad_min_silence_s=_float("ASSIST_VAD_MIN_SILENCE_S", 0.3, 0.05, 3.0),
            queue_s=_float("ASSIST_QUEUE_S", 10.0, 1.0, 600.0),
            context_s=_float("ASSIST_CONTEXT_S", 8.0, 0.0, 20.0),
            context_zh_s=_float("ASSIST_CONTEXT_ZH_S", 0.0, 0.0, 20.0),
        )


@dataclass(frozen=True, slots=True)
class Settings:
    asr: AsrSettings = field(default_factory=AsrSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(asr=AsrSettings.from_env(), stream=StreamSettings.from_env())
