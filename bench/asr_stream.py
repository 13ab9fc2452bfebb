"""Streaming ASR benchmark on the dev call set (English calls by default).

    python bench/asr_stream.py [--callset ../shared/callsets/dev] [--ids a,b] [--lang en]
                               [--realtime N] [--model asr-en|asr-multilingual] [--no-batch]

Renders the calls with the call set's synth.py (cached under bench/out/), then prints:
- WER of the streaming finals vs. batch ``WhisperModel.transcribe`` (whole channel,
  vad_filter=True, same model, beam 1) on the same audio, and their ratio;
- finals on the wrong channel (a final whose time lies in no turn of its channel's speaker);
- compute: wall time of an as-fast-as-possible replay / call duration (both channels), RTF of
  decoding per channel, decode time per pass p50/p95;
- partial cadence: seconds of speech between consecutive partials of a segment, p50/p95;
- with ``--realtime N``: N calls replayed at their own pace, finalisation delay (end of the
  turn in the timeline -> its last ``transcript.final`` read off the bus) p50/p95/max.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.wer import wer  # noqa: E402
from models.registry import resolve_model  # noqa: E402
from sidecar.bus import InMemoryBus  # noqa: E402
from sidecar.callfile import AudioCall, load_audio  # noqa: E402
from sidecar.clock import Clock, FastClock, RealtimeClock  # noqa: E402
from sidecar.engine import SpeechEngine, load_whisper  # noqa: E402
from sidecar.events import CHANNELS, Channel, Event, TranscriptFinal, TranscriptPartial  # noqa: E402
from sidecar.replay import replay_audio  # noqa: E402
from sidecar.settings import AsrSettings, Settings, StreamSettings  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


@dataclass
class CallRun:
    call_id: str
    duration_s: float
    wall_s: float
    events: list[tuple[float, Event]] = field(default_factory=list)  # (seconds since call.started, event)
    decode_s: dict[str, list[float]] = field(default_factory=dict)  # per channel, each decode pass


async def run_stream(engine: SpeechEngine, wav: Path, lang: str, realtime: bool) -> CallRun:
    call = load_audio(wav)
    clock: Clock = RealtimeClock() if realtime else FastClock()
    bus = InMemoryBus(clock)
    run = CallRun(wav.stem, call.duration_s, 0.0)
    t0 = time.monotonic()

    async def collect() -> None:
        async for event in bus.subscribe(wav.stem, after_seq=0):
            run.events.append((time.monotonic() - t0, event))

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0)
    pipeline = await replay_audio(
        call, call_id=wav.stem, bus=bus, engine=engine, clock=clock, lang=lang, realtime=realtime
    )
    await collector
    run.decode_s = {ch: list(tr.stats.decode_s) for ch, tr in pipeline.transcribers.items()}
    run.wall_s = time.monotonic() - t0
    return run


def batch_text(model: Any, call: AudioCall, channel: Channel, lang: str) -> str:
    pcm = call.channels[channel].astype("float32") / 32768.0
    segments, _ = model.transcribe(pcm, language=lang, beam_size=1, vad_filter=True)
    return " ".join(s.text.strip() for s in segments)


def render(callset: Path, work: Path, ids: list[str]) -> None:
    missing = [i for i in ids if not (work / f"{i}.timeline.json").exists()]
    if missing:
        work.mkdir(parents=True, exist_ok=True)
        print(f"rendering {len(missing)} calls with espeak-ng ...", file=sys.stderr)
        subprocess.run([sys.executable, str(callset / "synth.py"), str(callset), str(work), "--ids",
                        ",".join(missing), "--sox"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip


def turns_of(work: Path, cid: str) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = json.loads((work / f"{cid}.timeline.json").read_text())["turns"]
    return turns


def wrong_channel(run: CallRun, turns: list[dict[str, Any]]) -> int:
    bad = 0
    for _, e in run.events:
        if e.type != "transcript.final" or not isinstance(e.payload, TranscriptFinal) or not e.payload.words:
            continue
        mid = (e.payload.words[0].t_start + e.payload.words[-1].t_end) / 2
        owner = next((t["speaker"] for t in turns if t["start_s"] - 0.3 <= mid <= t["end_s"] + 0.3), None)
        bad += owner != e.channel
    return bad


def final_delays(run: CallRun, turns: list[dict[str, Any]]) -> list[float]:
    """Per spoken turn: when its last final was read, minus the turn's end in the audio."""
    delays = []
    for i, turn in enumerate(turns):
        if turn["speaker"] not in ("agent", "customer"):
            continue
        nxt = next((t["start_s"] for t in turns[i + 1 :] if t["speaker"] == turn["speaker"]), 1e9)
        seen = [s for s, e in run.events if e.type == "transcript.final" and e.channel == turn["speaker"]
                and turn["start_s"] < e.t_end <= min(nxt, turn["end_s"] + 2.0)]  # fmt: skip
        if seen:
            delays.append(max(seen) - turn["end_s"])
    return delays


def partial_gaps(run: CallRun) -> list[float]:
    gaps: list[float] = []
    last: dict[tuple[str | None, int], float] = {}
    for _, e in run.events:
        if isinstance(e.payload, TranscriptPartial):
            key = (e.channel, e.payload.segment)
            if key in last:
                gaps.append(e.t_end - last[key])
            last[key] = e.t_end
    return gaps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--callset", type=Path, default=ROOT.parent / "shared" / "callsets" / "dev")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "dev")
    ap.add_argument("--ids", default="")
    ap.add_argument("--lang", default="en")
    ap.add_argument("--model", choices=["asr-en", "asr-multilingual"], default=None)
    ap.add_argument("--realtime", type=int, default=0, metavar="N", help="also replay N calls in real time")
    ap.add_argument("--no-batch", action="store_true", help="skip the batch WER baseline")
    a = ap.parse_args()
    calls = json.loads((a.callset / "calls.json").read_text())["calls"]
    ids = [c["id"] for c in calls if c["lang"] == a.lang and (not a.ids or c["id"] in a.ids.split(","))]
    render(a.callset, a.work, ids)
    asr = AsrSettings.from_env()
    if a.model:
        asr = AsrSettings(asr.device, asr.compute_type, asr.cpu_threads, asr.workers, asr.beam_size, a.model)
    engine = SpeechEngine(Settings(asr=asr, stream=StreamSettings.from_env()))
    engine.preload(a.lang)
    decode: list[float] = []
    key = engine.model_key(a.lang)
    print(
        f"model {key}, {len(ids)} {a.lang} calls, threads {asr.cpu_threads}, workers {asr.workers}",
        file=sys.stderr,
    )

    batch_model = (
        None
        if a.no_batch
        else load_whisper(resolve_model(key), asr.device, asr.compute_type, asr.cpu_threads, asr.workers)
    )
    stream_err = stream_n = batch_err = batch_n = wrong = 0
    compute: list[float] = []
    cadence: list[float] = []
    rtf: dict[str, list[float]] = {"agent": [], "customer": []}
    for cid in ids:
        wav, turns = a.work / f"{cid}.wav", turns_of(a.work, cid)
        run = asyncio.run(run_stream(engine, wav, a.lang, realtime=False))
        compute.append(run.wall_s / run.duration_s)
        wrong += wrong_channel(run, turns)
        cadence += partial_gaps(run)
        for ch, times in run.decode_s.items():
            rtf[ch].append(sum(times) / run.duration_s)
            decode += times
        call = None if batch_model is None else load_audio(wav)
        for ch in CHANNELS:
            ref = " ".join(t["text"] for t in turns if t["speaker"] == ch)
            hyp = " ".join(e.payload.text for _, e in run.events
                           if isinstance(e.payload, TranscriptFinal) and e.channel == ch)  # fmt: skip
            err, n = wer(ref, hyp)
            stream_err, stream_n = stream_err + err, stream_n + n
            if batch_model is not None and call is not None:
                err_b, n_b = wer(ref, batch_text(batch_model, call, ch, a.lang))
                batch_err, batch_n = batch_err + err_b, batch_n + n_b
        print(f"  {cid}: stream WER so far {stream_err / max(1, stream_n):.3f}, compute {compute[-1]:.3f}x",
              file=sys.stderr)  # fmt: skip

    print(f"streaming WER          {stream_err / stream_n:.3f}  ({stream_err}/{stream_n} words)")
    if not a.no_batch:
        b = batch_err / batch_n
        print(f"batch WER (vad_filter) {b:.3f}  ({batch_err}/{batch_n} words)")
        print(f"WER ratio stream/batch {(stream_err / stream_n) / b:.3f}  (goal <= 1.10)")
    print(f"finals on wrong channel {wrong}")
    print(f"compute / call duration p50 {pct(compute, 0.5):.3f}  max {max(compute):.3f}  (goal <= 0.25)")
    for ch in ("agent", "customer"):
        print(f"decode RTF {ch:8}      p50 {pct(rtf[ch], 0.5):.3f}  max {max(rtf[ch]):.3f}")
    p50, p95 = pct(decode, 0.5) * 1000, pct(decode, 0.95) * 1000
    print(f"decode per pass        p50 {p50:.0f} ms  p95 {p95:.0f} ms  (n={len(decode)})")
    print(f"partial cadence        p50 {pct(cadence, 0.5):.2f} s  p95 {pct(cadence, 0.95):.2f} s of speech")
    if a.realtime:
        delays: list[float] = []
        for cid in ids[: a.realtime]:
            run = asyncio.run(run_stream(engine, a.work / f"{cid}.wav", a.lang, realtime=True))
            delays += final_delays(run, turns_of(a.work, cid))
            print(f"  {cid} (realtime): {len(delays)} turns so far", file=sys.stderr)
        print(f"finalisation delay     p50 {pct(delays, 0.5):.2f} s  p95 {pct(delays, 0.95):.2f} s  "
              f"max {max(delays):.2f} s  (n={len(delays)}; goal p50 <= 0.5, p95 <= 1.0)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
