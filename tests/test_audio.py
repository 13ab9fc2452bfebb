import warnings

import numpy as np
import pytest

from sidecar.audio import StreamResampler, decode_g711, encode_g711, resample, split_channels, to_float

pytestmark = pytest.mark.unit

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the standard library's G.711 codec: an independent reference (Python <= 3.12)


@pytest.mark.parametrize(("law", "reference"), [("ulaw", audioop.ulaw2lin), ("alaw", audioop.alaw2lin)])
def test_g711_decoding_matches_the_reference_for_every_code(law, reference):
    codes = bytes(range(256))
    expected = np.frombuffer(reference(codes, 2), dtype=np.int16)
    assert np.array_equal(decode_g711(codes, law), expected)


def test_mulaw_known_values():
    # 0xFF and 0x7F are the two zeros of μ-law; 0x00 is the most negative value
    assert decode_g711(b"\xff\x7f\x00\x80", "ulaw").tolist() == [0, 0, -32124, 32124]


def test_mulaw_round_trip_of_a_sine_is_close():
    t = np.arange(8000) / 8000
    sine = (np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        encoded = audioop.lin2ulaw(sine.tobytes(), 2)
    decoded = decode_g711(encoded, "ulaw")
    assert np.max(np.abs(decoded.astype(int) - sine)) < 12000 * 0.04


def _dominant_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / pcm.size)


@pytest.mark.parametrize("src", [8000, 44100, 48000, 16000])
def test_resample_to_16k_keeps_length_and_pitch(src):
    t = np.arange(src) / src  # one second
    tone = (np.sin(2 * np.pi * 1000 * t) * 10000).astype(np.int16)
    out = resample(tone, src)
    assert out.dtype == np.int16
    assert abs(out.size - 16000) <= 2
    assert _dominant_hz(out, 16000) == pytest.approx(1000, abs=2)


def test_resampling_removes_content_above_the_new_nyquist():
    t = np.arange(48000) / 48000
    high = (np.sin(2 * np.pi * 12000 * t) * 10000).astype(np.int16)  # above 8 kHz
    out = resample(high, 48000)
    assert np.sqrt(np.mean(out.astype(float) ** 2)) < 100  # filtered, not aliased to 4 kHz


def test_stream_resampler_in_chunks_matches_one_shot():
    t = np.arange(8000) / 8000
    tone = (np.sin(2 * np.pi * 300 * t) * 10000).astype(np.int16)
    stream = StreamResampler(8000)
    chunks = [stream.process(tone[i : i + 160]) for i in range(0, tone.size, 160)]
    chunks.append(stream.process(np.zeros(0, dtype=np.int16), last=True))
    streamed = np.concatenate(chunks)
    assert abs(streamed.size - 16000) <= 2
    one_shot = resample(tone, 8000)
    n = min(streamed.size, one_shot.size) - 200
    assert np.max(np.abs(streamed[200:n].astype(int) - one_shot[200:n])) < 300


def test_split_channels_deinterleaves():
    interleaved = np.array([1, -1, 2, -2, 3, -3], dtype=np.int16)
    left, right = split_channels(interleaved, 2)
    assert left.tolist() == [1, 2, 3]
    assert right.tolist() == [-1, -2, -3]


def test_to_float_scale():
    assert to_float(np.array([-32768, 0, 16384], dtype=np.int16)).tolist() == [-1.0, 0.0, 0.5]


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_g711_encoding_round_trips_within_its_quantisation(law: str) -> None:
    t = np.arange(8000) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    coded = encode_g711(pcm, law)  # type: ignore[arg-type]
    assert len(coded) == pcm.size
    back = decode_g711(coded, law)  # type: ignore[arg-type]
    # G.711 keeps ~13 bits: the error stays within a few percent of the signal's level
    assert np.max(np.abs(back.astype(np.int32) - pcm)) < 8000 * 0.04
