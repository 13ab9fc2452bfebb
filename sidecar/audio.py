"""Sample formats for the pipeline: everything becomes int16 mono 16 kHz per channel.

G.711 decoding uses FFmpeg's codecs (PyAV) to build a 256-entry table once; resampling uses
libsoxr (python-soxr), one-shot or streaming. No hand-written DSP.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

import av
import numpy as np
import numpy.typing as npt
import soxr

PIPELINE_RATE = 16_000
Pcm16 = npt.NDArray[np.int16]
Float32 = npt.NDArray[np.float32]
G711Law = Literal["ulaw", "alaw"]

_G711_CODECS: dict[G711Law, str] = {"ulaw": "pcm_mulaw", "alaw": "pcm_alaw"}


@cache
def _g711_table(law: G711Law) -> Pcm16:
    ctx: Any = av.CodecContext.create(_G711_CODECS[law], "r")  # an AudioCodecContext
    ctx.sample_rate = 8000
    ctx.layout = "mono"
    frames = ctx.decode(av.Packet(bytes(range(256))))
    table = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)
    if table.shape != (256,):
        raise RuntimeError(
            f"FFmpeg {_G711_CODECS[law]} decoder returned {table.shape[0]} samples for 256 codes"
        )
    return table


def decode_g711(data: bytes | npt.NDArray[np.uint8], law: G711Law) -> Pcm16:
    """μ-law (PCMU) or A-law (PCMA) bytes to int16 samples, one sample per byte."""
    codes = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    return _g711_table(law)[codes]


@cache
def _g711_encode_table(law: G711Law) -> npt.NDArray[np.uint8]:
    """The code of every int16 value, from FFmpeg's own encoder."""
    ctx: Any = av.CodecContext.create(_G711_CODECS[law], "w")
    ctx.sample_rate = 8000
    ctx.layout = "mono"
    ctx.format = "s16"
    frame = av.AudioFrame.from_ndarray(
        np.arange(-32768, 32768, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = 8000
    packets = list(ctx.encode(frame)) + list(ctx.encode(None))
    table = np.frombuffer(b"".join(bytes(p) for p in packets), dtype=np.uint8)
    if table.shape != (65536,):
        raise RuntimeError(
            f"FFmpeg {_G711_CODECS[law]} encoder returned {table.shape[0]} codes for 65536 samples"
        )
    return table


def encode_g711(pcm: Pcm16, law: G711Law) -> bytes:
    """int16 samples to μ-law (PCMU) or A-law (PCMA) bytes, one byte per sample (for clients and
    tests that play the telephony side, and for the listen-in path)."""
    return bytes(_g711_encode_table(law)[pcm.astype(np.int32) + 32768].tobytes())


def resample(pcm: Pcm16, src_rate: int, dst_rate: int = PIPELINE_RATE) -> Pcm16:
    """Whole-signal resampling (replay of files)."""
    if src_rate == dst_rate or pcm.size == 0:
        return pcm
    out = soxr.resample(pcm, src_rate, dst_rate, quality="HQ")
    return np.asarray(out, dtype=np.int16)


class StreamResampler:
    """Chunk-by-chunk resampling for live taps; keeps filter state between chunks."""

    def __init__(self, src_rate: int, dst_rate: int = PIPELINE_RATE) -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._stream = (
            None if src_rate == dst_rate else soxr.ResampleStream(src_rate, dst_rate, 1, dtype="int16")
        )

    def process(self, pcm: Pcm16, last: bool = False) -> Pcm16:
        if self._stream is None:
            return pcm
        return np.asarray(self._stream.resample_chunk(pcm, last=last), dtype=np.int16)


def split_channels(interleaved: Pcm16, channels: int) -> list[Pcm16]:
    """Interleaved frames (L R L R ...) to one contiguous array per channel."""
    if channels == 1:
        return [interleaved]
    usable = interleaved[: interleaved.size - interleaved.size % channels]
    frames = usable.reshape(-1, channels)
    return [np.ascontiguousarray(frames[:, c]) for c in range(channels)]


def to_float(pcm: Pcm16) -> Float32:
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)
