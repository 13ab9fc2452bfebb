"""Call files for replay: a WAV recording, or a transcript ``.jsonl`` (one turn a line).

WAV: stereo is agent left, customer right; mono goes to the channel the caller names.
JSONL: ``{"channel": "agent"|"customer", "text": "...", "start_s": 1.2, "end_s": 3.4}`` per line;
gaps between turns are silences. Every problem is an ``InputError`` naming file and line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from sidecar.audio import PIPELINE_RATE, Pcm16, resample
from sidecar.kernel.errors import InputError
from sidecar.kernel.events import CHANNELS, Channel
from sidecar.kernel.turns import Turn
from sidecar.wavfile import read_wav


@dataclass(frozen=True, slots=True)
class AudioCall:
    path: Path
    channels: dict[Channel, Pcm16]  # 16 kHz int16 per channel
    source_rate: int
    source_encoding: str

    @property
    def duration_s(self) -> float:
        return max(pcm.size for pcm in self.channels.values()) / PIPELINE_RATE


@dataclass(frozen=True, slots=True)
class TranscriptCall:
    path: Path
    turns: tuple[Turn, ...]  # sorted by end time

    @property
    def duration_s(self) -> float:
        return max((t.end_s for t in self.turns), default=0.0)


CallFile = AudioCall | TranscriptCall


class TranscriptError(InputError):
    """One or more call transcripts we cannot read; ``problems`` lists each (file:line: why)."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


def load_call(path: Path, mono_channel: Channel = "customer") -> CallFile:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return load_transcript(path)
    if suffix in (".wav", ".wave"):
        return load_audio(path, mono_channel)
    raise InputError(f"{path}: unsupported call file type {suffix or '(none)'!r}; give a .wav or a .jsonl")


def load_transcripts(calls_dir: Path) -> list[TranscriptCall]:
    """Every transcript ``*.jsonl`` of a directory, by file name. Bad files raise one
    ``TranscriptError`` listing every one of them (with its line); an empty directory is an
    ``InputError``."""
    if not calls_dir.is_dir():
        raise InputError(f"{calls_dir}: not a directory of call transcripts")
    paths = sorted(p for p in calls_dir.glob("*.jsonl") if p.is_file())
    if not paths:
        raise InputError(f"{calls_dir}: no transcript files (*.jsonl)")
    calls: list[TranscriptCall] = []
    problems: list[str] = []
    for path in paths:
        try:
            calls.append(load_transcript(path))
        except InputError as exc:
            problems.append(str(exc))
    if len(problems) == 1:
        raise TranscriptError(problems[0])
    if problems:
        listing = "\n".join(f"  {p}" for p in problems)
        raise TranscriptError(
            f"{calls_dir}: {len(problems)} bad transcript files:\n{listing}", tuple(problems)
        )
    return calls


def load_audio(path: Path, mono_channel: Channel = "customer") -> AudioCall:
    wav = read_wav(path)
    if len(wav.channels) == 2:
        mapping: dict[Channel, Pcm16] = {"agent": wav.channels[0], "customer": wav.channels[1]}
    else:
        mapping = {mono_channel: wav.channels[0]}
    converted = {ch: resample(pcm, wav.sample_rate) for ch, pcm in mapping.items()}
    return AudioCall(path, converted, wav.sample_rate, wav.encoding)


def load_transcript(path: Path) -> TranscriptCall:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not raw.strip():
        raise InputError(f"{path}: empty file: expected one JSON turn per line")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x})") from None
    turns = [
        _parse_turn(line, f"{path}:{number}")
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    return TranscriptCall(path, tuple(sorted(turns, key=lambda t: (t.end_s, t.start_s))))


def _parse_turn(line: str, where: str) -> Turn:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: invalid JSON: {exc.msg}") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("channel", "text", "start_s", "end_s") if k not in obj]
    if missing:
        raise InputError(f"{where}: missing field {', '.join(repr(m) for m in missing)}")
    channel, text = obj["channel"], obj["text"]
    if channel not in CHANNELS:
        raise InputError(f"{where}: channel must be 'agent' or 'customer', got {channel!r}")
    if not isinstance(text, str):
        raise InputError(f"{where}: text must be a string")
    start, end = obj["start_s"], obj["end_s"]
    numbers = (start, end)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
        raise InputError(f"{where}: start_s and end_s must be numbers")
    if start < 0 or end < start:
        raise InputError(f"{where}: need 0 <= start_s <= end_s, got {start} and {end}")
    return Turn(channel, text, float(start), float(end))
