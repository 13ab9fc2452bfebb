import struct
import wave

import numpy as np
import pytest

from sidecar.kernel.errors import InputError
from sidecar.wavfile import parse_wav, read_wav
from tests.conftest import write_wav

pytestmark = pytest.mark.unit


def _wav_bytes(
    tag: int, channels: int, rate: int, bits: int, payload: bytes, extensible: bool = False
) -> bytes:
    block = channels * bits // 8
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0)
        fmt += struct.pack("<H", tag) + guid_tail
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(payload))
        + payload
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_reads_stereo_pcm16(tmp_path):
    left = np.arange(100, dtype=np.int16)
    right = -np.arange(100, dtype=np.int16)
    wav = read_wav(write_wav(tmp_path / "s.wav", [left, right], 8000))
    assert wav.sample_rate == 8000
    assert wav.encoding == "pcm16"
    assert np.array_equal(wav.channels[0], left)
    assert np.array_equal(wav.channels[1], right)


def test_reads_mulaw_and_alaw():
    mulaw = parse_wav(_wav_bytes(7, 1, 8000, 8, b"\xff\x00\x80"))
    assert mulaw.encoding == "ulaw"
    assert mulaw.channels[0].tolist() == [0, -32124, 32124]
    alaw = parse_wav(_wav_bytes(6, 2, 8000, 8, b"\xd5\xd5"))
    assert alaw.encoding == "alaw"
    assert len(alaw.channels) == 2


def test_reads_extensible_float_and_24_bit():
    floats = np.array([0.5, -0.5], dtype="<f4").tobytes()
    f = parse_wav(_wav_bytes(3, 1, 16000, 32, floats, extensible=True))
    assert f.channels[0].tolist() == [16384, -16384]
    pcm24 = b"\x00\x00\x40" + b"\x00\x00\xc0"  # +0.5, -0.5 full scale
    p = parse_wav(_wav_bytes(1, 1, 16000, 24, pcm24))
    assert p.channels[0].tolist() == [16384, -16384]


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        read_wav(path)


def test_truncated_file(tmp_path):
    full = write_wav(tmp_path / "full.wav", [np.ones(16000, dtype=np.int16)]).read_bytes()
    with pytest.raises(InputError, match="truncated"):
        parse_wav(full[: len(full) // 2])


def test_8_bit_pcm_is_refused_with_advice(tmp_path):
    path = tmp_path / "8bit.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(bytes([128] * 800))
    with pytest.raises(InputError, match="8-bit linear PCM is not supported"):
        read_wav(path)


def test_three_channels_are_refused(tmp_path):
    path = write_wav(tmp_path / "3ch.wav", [np.zeros(10, dtype=np.int16)] * 3)
    with pytest.raises(InputError, match="3 channels"):
        read_wav(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello world, not audio", "not a WAV file"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no 'fmt ' chunk"),
        (_wav_bytes(0x55, 1, 8000, 16, b"\x00\x00"), "unsupported WAV encoding"),
        (_wav_bytes(1, 1, 16000, 16, b"\x00\x00\x00"), "middle of a sample frame"),
        (_wav_bytes(1, 1, 16000, 16, b""), "holds no audio"),
    ],
)
def test_corrupt_inputs(data, message):
    with pytest.raises(InputError, match=message):
        parse_wav(data)


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_wav(tmp_path / "nope.wav")
    with pytest.raises(InputError, match="is a directory"):
        read_wav(tmp_path)
