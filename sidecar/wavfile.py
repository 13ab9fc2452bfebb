"""Reading call recordings (RIFF/WAVE) with clear errors.

Accepted: PCM 16/24/32-bit, IEEE float 32-bit, G.711 μ-law and A-law (also inside
WAVE_FORMAT_EXTENSIBLE), mono or stereo, any sample rate (resampled to 16 kHz later).
Rejected with a message that says what to do: 8-bit linear PCM, more than two channels,
compressed formats, truncated or corrupt files.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sidecar.audio import Pcm16, decode_g711, split_channels
from sidecar.kernel.errors import InputError

_PCM, _FLOAT, _ALAW, _MULAW, _EXTENSIBLE = 0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE
_FORMAT_NAMES = {_PCM: "pcm", _FLOAT: "float", _ALAW: "alaw", _MULAW: "ulaw"}
_STREAMING_SIZE = 0xFFFFFFFF  # writers that stream (ffmpeg to a pipe) leave the size unknown


@dataclass(frozen=True, slots=True)
class WavAudio:
    sample_rate: int
    encoding: str  # pcm16, pcm24, pcm32, float32, ulaw, alaw
    channels: tuple[Pcm16, ...]  # one int16 array per channel, at ``sample_rate``

    @property
    def duration_s(self) -> float:
        return self.channels[0].size / self.sample_rate if self.channels else 0.0


@dataclass(frozen=True, slots=True)
class _Format:
    tag: int
    channels: int
    sample_rate: int
    block_align: int
    bits: int


def read_wav(path: Path) -> WavAudio:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a WAV file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_wav(data, str(path))


def parse_wav(data: bytes, name: str = "<wav>") -> WavAudio:
    if not data:
        raise InputError(f"{name}: empty file")
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        raise InputError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    fmt: _Format | None = None
    payload: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body_start = pos + 8
        if chunk_id == b"data":
            if size == _STREAMING_SIZE or (size == 0 and data[:4] == b"RF64"):
                size = len(data) - body_start
            if body_start + size > len(data):
                raise InputError(
                    f"{name}: truncated WAV: the data chunk declares {size} bytes, "
                    f"only {len(data) - body_start} are present"
                )
            payload = data[body_start : body_start + size]
            break
        if body_start + size > len(data):
            raise InputError(f"{name}: truncated WAV: chunk {chunk_id!r} runs past the end of the file")
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(data[body_start : body_start + size], name)
        pos = body_start + size + (size & 1)  # chunks are word-aligned
    if fmt is None:
        raise InputError(f"{name}: corrupt WAV: no 'fmt ' chunk before the audio data")
    if payload is None:
        raise InputError(f"{name}: corrupt WAV: no 'data' chunk")
    return _decode(payload, fmt, name)


def _parse_fmt(body: bytes, name: str) -> _Format:
    if len(body) < 16:
        raise InputError(f"{name}: corrupt WAV: 'fmt ' chunk is {len(body)} bytes, needs 16")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _EXTENSIBLE:
        if len(body) < 40:
            raise InputError(f"{name}: corrupt WAV: WAVE_FORMAT_EXTENSIBLE header is too short")
        tag = struct.unpack_from("<H", body, 24)[0]  # first two bytes of the sub-format GUID
    return _Format(tag, channels, rate, block_align, bits)


def _decode(payload: bytes, fmt: _Format, name: str) -> WavAudio:
    if fmt.tag not in _FORMAT_NAMES:
        raise InputError(
            f"{name}: unsupported WAV encoding (format tag 0x{fmt.tag:04x}); "
            "use PCM 16-bit, float, μ-law or A-law"
        )
    if fmt.channels not in (1, 2):
        raise InputError(
            f"{name}: {fmt.channels} channels; expected mono, or stereo with the agent left "
            "and the customer right"
        )
    if not 4000 <= fmt.sample_rate <= 192_000:
        raise InputError(f"{name}: implausible sample rate {fmt.sample_rate} Hz")
    kind = _FORMAT_NAMES[fmt.tag]
    if kind == "pcm" and fmt.bits == 8:
        raise InputError(
            f"{name}: 8-bit linear PCM is not supported; convert it to 16-bit "
            "(e.g. `sox in.wav -b 16 out.wav`)"
        )
    width = {("pcm", 16): 2, ("pcm", 24): 3, ("pcm", 32): 4, ("float", 32): 4, ("ulaw", 8): 1, ("alaw", 8): 1}
    sample_bytes = width.get((kind, fmt.bits))
    if sample_bytes is None:
        raise InputError(f"{name}: unsupported {kind} sample size of {fmt.bits} bits")
    if fmt.block_align != sample_bytes * fmt.channels:
        raise InputError(f"{name}: corrupt WAV: block align {fmt.block_align} does not match the format")
    if len(payload) % fmt.block_align:
        raise InputError(f"{name}: truncated WAV: the audio data ends in the middle of a sample frame")
    if not payload:
        raise InputError(f"{name}: the WAV file holds no audio")
    interleaved = _to_pcm16(payload, kind, fmt.bits)
    encoding = {"pcm": f"pcm{fmt.bits}", "float": "float32"}.get(kind, kind)
    return WavAudio(fmt.sample_rate, encoding, tuple(split_channels(interleaved, fmt.channels)))


def _to_pcm16(payload: bytes, kind: str, bits: int) -> Pcm16:
    if kind in ("ulaw", "alaw"):
        return decode_g711(payload, "ulaw" if kind == "ulaw" else "alaw")
    if kind == "float":
        samples = np.frombuffer(payload, dtype="<f4")
        return np.asarray(np.clip(np.nan_to_num(samples) * 32768.0, -32768, 32767), dtype=np.int16)
    if bits == 16:
        return np.frombuffer(payload, dtype="<i2").astype(np.int16)
    if bits == 24:
        raw = np.frombuffer(payload, dtype=np.uint8).reshape(-1, 3)
        return (raw[:, 2].astype(np.int8).astype(np.int16) << 8 | raw[:, 1].astype(np.int16)).astype(np.int16)
    return (np.frombuffer(payload, dtype="<i4") >> 16).astype(np.int16)
