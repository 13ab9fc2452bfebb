"""``assist replay``: the contract the evaluation tools depend on, end to end in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import dialogue, espeak, silence, write_wav

ASSIST = Path(sys.executable).parent / "assist"
CONTRACT = {"type", "call_id", "seq", "channel", "t_start", "t_end", "emitted_at", "payload"}


def replay(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ASSIST), "replay", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def events_of(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    events = [json.loads(line) for line in lines]  # stdout holds JSON lines and nothing else
    assert events, "no events"
    for e in events:
        assert set(e) == CONTRACT
    assert events[0]["type"] == "call.started"
    assert events[-1]["type"] == "call.ended"
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1))  # strictly increasing, no gaps
    assert len({e["call_id"] for e in events}) == 1
    return events


@pytest.fixture(scope="module")
def stereo_call(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, float, float]]]:
    agent, customer, timeline = dialogue(
        [
            ("agent", "Thank you for calling. How can I help you today?"),
            ("customer", "I would like to cancel my order, please."),
            ("agent", "I am sorry to hear that. Let me check the order."),
        ]
    )
    path = write_wav(tmp_path_factory.mktemp("calls") / "call.wav", [agent, customer])
    return path, timeline


@pytest.mark.model
@pytest.mark.espeak
def test_stereo_replay_attributes_channels(stereo_call):
    path, timeline = stereo_call
    events = events_of(replay(path))
    finals = [e for e in events if e["type"] == "transcript.final"]
    partials = [e for e in events if e["type"] == "transcript.partial"]
    assert partials, "partials while people speak"
    text = {
        ch: " ".join(e["payload"]["text"] for e in finals if e["channel"] == ch).lower()
        for ch in ("agent", "customer")
    }
    assert "how can i help you today" in text["agent"]
    assert "check the order" in text["agent"]
    assert "cancel my order" in text["customer"]
    assert "cancel" not in text["agent"]
    assert "help you today" not in text["customer"]
    for e in finals:  # every final lies inside a turn of its own speaker
        mid = (e["payload"]["words"][0]["t_start"] + e["payload"]["words"][-1]["t_end"]) / 2
        owner = [who for who, s, t in timeline if s - 0.3 <= mid <= t + 0.3]
        assert owner == [e["channel"]]
        assert all(w["t_start"] <= w["t_end"] for w in e["payload"]["words"])
    ended = events[-1]["payload"]
    assert ended["reason"] == "completed"
    assert ended["stats"]["frames_dropped"] == 0


@pytest.mark.model
@pytest.mark.espeak
def test_mono_8khz_mulaw_call_goes_to_the_named_channel(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # the standard library's G.711 encoder, as a reference

    speech = np.concatenate([silence(0.3), espeak("I would like to cancel my order, please."), silence(0.8)])
    pcm8k = speech[::2].copy()  # crude decimation is fine for a test signal
    path = tmp_path / "mono.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm8k.tobytes())
    data = bytearray(path.read_bytes())
    ulaw = audioop.lin2ulaw(bytes(data[44:]), 2)
    header = bytearray(data[:44])
    header[20:22] = (7).to_bytes(2, "little")  # WAVE_FORMAT_MULAW
    header[28:32] = (8000).to_bytes(4, "little")
    header[32:34] = (1).to_bytes(2, "little")
    header[34:36] = (8).to_bytes(2, "little")
    header[40:44] = len(ulaw).to_bytes(4, "little")
    header[4:8] = (36 + len(ulaw)).to_bytes(4, "little")
    path.write_bytes(bytes(header) + ulaw)
    events = events_of(replay(path, "--channel", "agent"))
    finals = [e for e in events if e["type"] == "transcript.final"]
    assert {e["channel"] for e in finals} == {"agent"}
    assert "cancel my order" in " ".join(e["payload"]["text"] for e in finals).lower()


@pytest.mark.model
def test_transcript_replay(tmp_path):
    path = tmp_path / "chat.jsonl"
    kb = tmp_path / "kb.jsonl"
    kb.write_text(json.dumps({"id": "zh-refund", "title": "退款流程", "body": "核实订单后按原路退回，三到五个工作日到账。",
                              "tags": ["退款"], "lang": "zh", "triggers": ["退款"]}, ensure_ascii=False) + "\n",
                  encoding="utf-8")  # fmt: skip
    turns = [
        {"channel": "agent", "text": "Thanks for calling, how can I help?", "start_s": 0.0, "end_s": 2.0},
        {"channel": "customer", "text": "我要退款。", "start_s": 2.6, "end_s": 4.0},
    ]
    path.write_text("\n".join(json.dumps(t, ensure_ascii=False) for t in turns) + "\n\n", encoding="utf-8")
    events = events_of(replay(path, "--lang", "auto", "--kb", kb))
    finals = [e for e in events if e["type"] == "transcript.final"]
    assert [e["payload"]["snippet_id"] for e in events if e["type"] == "suggestion"] == ["zh-refund"]
    assert [e["payload"]["intent"] for e in events if e["type"] == "intent"] == ["refund_request"]
    assert [(e["channel"], e["payload"]["text"], e["payload"]["lang"]) for e in finals] == [
        ("agent", "Thanks for calling, how can I help?", "en"),
        ("customer", "我要退款。", "zh"),
    ]
    assert (finals[1]["t_start"], finals[1]["t_end"]) == (2.6, 4.0)
    assert finals[0]["payload"]["words"][0]["text"] == "Thanks"
    assert events[-1]["t_end"] == 4.0


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    good = write_wav(tmp / "good.wav", [np.ones(16000, dtype=np.int16)] * 2).read_bytes()
    (tmp / "empty.wav").write_bytes(b"")
    (tmp / "truncated.wav").write_bytes(good[: len(good) // 2])
    with wave.open(str(tmp / "8bit.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(bytes([128] * 1600))
    write_wav(tmp / "3ch.wav", [np.zeros(1600, dtype=np.int16)] * 3)
    (tmp / "latin1.jsonl").write_bytes(
        '{"channel": "agent", "text": "café", "start_s": 0, "end_s": 1}\n'.encode("latin-1")
    )
    complete = '{"channel": "agent", "text": "hi", "start_s": 0, "end_s": 1}'
    (tmp / "missing.jsonl").write_text(complete + '\n{"channel": "agent", "text": "hi", "start_s": 1}\n')
    (tmp / "empty.jsonl").write_text("\n")
    (tmp / "notjson.jsonl").write_text("channel: agent\n")
    (tmp / "call.mp3").write_bytes(b"ID3")
    return {
        "empty file": (tmp / "empty.wav", "empty file"),
        "truncated WAV": (tmp / "truncated.wav", "truncated"),
        "8-bit WAV": (tmp / "8bit.wav", "8-bit"),
        "3-channel WAV": (tmp / "3ch.wav", "3 channels"),
        "non-UTF-8 jsonl": (tmp / "latin1.jsonl", "latin1.jsonl:1: not UTF-8"),
        "jsonl missing a field": (tmp / "missing.jsonl", "missing.jsonl:2: missing field 'end_s'"),
        "empty jsonl": (tmp / "empty.jsonl", "empty file"),
        "jsonl that is not JSON": (tmp / "notjson.jsonl", "notjson.jsonl:1: invalid JSON"),
        "unknown type": (tmp / "call.mp3", "unsupported call file type"),
        "missing file": (tmp / "nope.wav", "no such file"),
    }


@pytest.mark.unit
def test_bad_inputs_give_one_line_and_a_non_zero_exit(tmp_path):
    for name, (path, message) in _bad_inputs(tmp_path).items():
        proc = replay(path, timeout=60)
        assert proc.returncode != 0, name
        assert proc.stdout == "", name
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, (name, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert message in lines[0], (name, lines[0])


@pytest.mark.unit
def test_bad_options_are_usage_errors(tmp_path):
    call = tmp_path / "c.jsonl"
    call.write_text('{"channel": "agent", "text": "hi", "start_s": 0, "end_s": 1}\n')
    for args in (["--lang", "fr"], ["--channel", "both"], ["--kb", tmp_path / "missing.jsonl"]):
        proc = replay(call, *args, timeout=60)
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr
