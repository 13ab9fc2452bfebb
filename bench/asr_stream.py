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
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.wer import error_rate  # noqa: E402
from models.registry import resolve_model  # noqa: E402
from sidecar.asr import SIMPLIFIED_CHINESE_PROMPT  # noqa: E402
from sidecar.audio import PIPELINE_RATE, Pcm16, decode_g711, encode_g711, resample  # noqa: E402
from sidecar.callfile import AudioCall, load_audio  # noqa: E402
from sidecar.engine import SpeechEngine, load_whisper  # noqa: E402
from sidecar.kernel.bus import InMemoryBus  # noqa: E402
from sidecar.kernel.clock import Clock, FastClock, RealtimeClock  # noqa: E402
from sidecar.kernel.errors import ModelNotFoundError  # noqa: E402
from sidecar.kernel.events import CHANNELS, Channel, Event, TranscriptFinal, TranscriptPartial  # noqa: E402
from sidecar.kernel.settings import AsrSettings, Settings, StreamSettings  # noqa: E402
from sidecar.replay import replay_audio  # noqa: E402


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
    cpu_s: float = 0.0  # process CPU time (all threads) of the replay


async def run_stream(engine: SpeechEngine, call: AudioCall, cid: str, lang: str, realtime: bool) -> CallRun:
    clock: Clock = RealtimeClock() if realtime else FastClock()
    bus = InMemoryBus(clock)
    run = CallRun(cid, call.duration_s, 0.0)
    t0, cpu0 = time.monotonic(), time.process_time()

    async def collect() -> None:
        async for event in bus.subscribe(cid, after_seq=0):
            run.events.append((time.monotonic() - t0, event))

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0)
    pipeline = await replay_audio(
        call, call_id=cid, bus=bus, engine=engine, clock=clock, lang=lang, realtime=realtime
    )
    await collector
    run.decode_s = {ch: list(tr.stats.decode_s) for ch, tr in pipeline.transcribers.items()}
    run.wall_s = time.monotonic() - t0
    run.cpu_s = time.process_time() - cpu0
    return run


def batch_text(model: Any, call: AudioCall, channel: Channel, lang: str) -> str:
    """The whole channel in one ``transcribe`` (VAD on, beam 1), with the prompt streaming uses."""
    pcm = call.channels[channel].astype("float32") / 32768.0
    prompt = SIMPLIFIED_CHINESE_PROMPT if lang == "zh" else None
    segments, _ = model.transcribe(pcm, language=lang, beam_size=1, vad_filter=True, initial_prompt=prompt)
    return " ".join(s.text.strip() for s in segments)


RENDERS = Path.home() / ".cache" / "agent-assist" / "renders"  # outside the repo: renders are large


class BenchSetupError(Exception):
    """Something to install before the bench can run; printed as one line."""


def renderer(voices: str, callset: Path, kokoro_dir: Path | None) -> tuple[list[str], dict[str, str]]:
    """The command that renders a call set, and its environment additions."""
    if voices == "espeak":
        if shutil.which("espeak-ng") is None:
            raise BenchSetupError("espeak-ng is not installed: apt-get install espeak-ng sox")
        return [sys.executable, str(callset / "synth.py")], {}
    script = callset.parent / "synth_kokoro.py"
    if kokoro_dir is None or not (kokoro_dir / "venv" / "bin" / "python").exists():
        raise BenchSetupError(
            "Kokoro voices are not installed: bash ../shared/callsets/kokoro/setup.sh DIR, "
            "then pass --kokoro-dir DIR (or set KOKORO_DIR)"
        )
    if not script.exists():
        raise BenchSetupError(f"{script} not found: --voices kokoro needs the call sets' synth_kokoro.py")
    return [str(kokoro_dir / "venv" / "bin" / "python"), str(script)], {"KOKORO_DIR": str(kokoro_dir)}


def render(cmd: list[str], env: dict[str, str], callset: Path, work: Path, ids: list[str]) -> None:
    missing = [i for i in ids if not (work / f"{i}.timeline.json").exists()]
    if missing:
        work.mkdir(parents=True, exist_ok=True)
        print(f"rendering {len(missing)} calls into {work} (cached there) ...", file=sys.stderr)
        subprocess.run([*cmd, str(callset), str(work), "--ids", ",".join(missing), "--sox"],
                       check=True, stdout=subprocess.DEVNULL, env={**os.environ, **env})  # fmt: skip


def degrade(call: AudioCall, telephone: bool, snr_db: float | None, seed: int) -> AudioCall:
    """What a phone line does to the audio: G.711 \u03bc-law at 8 kHz (then back to 16 kHz through
    the resampler the taps use), and/or pink background noise at ``snr_db`` below the channel's
    speech power (speech = the frames above -40 dBFS)."""
    if not telephone and snr_db is None:
        return call
    rng = np.random.default_rng(seed)
    out: dict[Channel, Pcm16] = {}
    for ch, pcm in call.channels.items():
        x = pcm.astype(np.float64)
        if snr_db is not None:
            frames = x[: x.size - x.size % 320].reshape(-1, 320)
            power = (frames**2).mean(axis=1)
            speech = power[power > (32768 * 0.01) ** 2]
            level = float(speech.mean()) if speech.size else float(power.mean())
            x = x + pink_noise(x.size, rng) * np.sqrt(level / 10 ** (snr_db / 10))
        y = np.clip(np.round(x), -32768, 32767).astype(np.int16)
        if telephone:
            narrow = resample(y, PIPELINE_RATE, 8000)
            y = resample(decode_g711(encode_g711(narrow, "ulaw"), "ulaw"), 8000, PIPELINE_RATE)
        out[ch] = y
    return AudioCall(call.path, out, 8000 if telephone else call.source_rate, call.source_encoding)


def pink_noise(n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Unit-power 1/f noise (white noise shaped in the frequency domain)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
    noise = np.fft.irfft(spectrum, n)
    return np.asarray(noise / (noise.std() or 1.0), dtype=np.float64)


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


CONDITIONS = ("clean", "ulaw", "noise15", "ulaw+noise15")


@dataclass
class Tally:
    err: int = 0
    n: int = 0

    def add(self, counts: tuple[int, int]) -> None:
        self.err, self.n = self.err + counts[0], self.n + counts[1]

    @property
    def rate(self) -> float:
        return self.err / self.n if self.n else float("nan")


def bench_language(
    a: argparse.Namespace, engine: SpeechEngine, lang: str, ids: list[str], condition: str
) -> None:
    asr = engine.settings.asr
    key = engine.model_key(lang)
    unit = "CER" if lang == "zh" else "WER"
    telephone, snr = "ulaw" in condition, (15.0 if "noise15" in condition else None)
    engine.preload(lang)
    batch_model = (
        None if a.no_batch else load_whisper(resolve_model(key), asr.device, asr.compute_type, asr.cpu_threads, asr.workers)
    )  # fmt: skip
    print(f"== {lang}: model {key}, {len(ids)} calls, voices {a.voices}, audio {condition}, "
          f"threads {asr.cpu_threads}, workers {asr.workers}")  # fmt: skip
    stream, batch = Tally(), Tally()
    wrong = 0
    compute: list[float] = []
    cpu: list[float] = []
    decode: list[float] = []
    cadence: list[float] = []
    rtf: dict[str, list[float]] = {"agent": [], "customer": []}
    for i, cid in enumerate(ids):
        call = degrade(load_audio(a.work / f"{cid}.wav"), telephone, snr, seed=i)
        turns = turns_of(a.work, cid)
        run = asyncio.run(run_stream(engine, call, cid, lang, realtime=False))
        compute.append(run.wall_s / run.duration_s)
        cpu.append(run.cpu_s / run.duration_s)
        wrong += wrong_channel(run, turns)
        cadence += partial_gaps(run)
        for ch, times in run.decode_s.items():
            rtf[ch].append(sum(times) / run.duration_s)
            decode += times
        for ch in CHANNELS:
            ref = " ".join(t["text"] for t in turns if t["speaker"] == ch)
            hyp = " ".join(e.payload.text for _, e in run.events
                           if isinstance(e.payload, TranscriptFinal) and e.channel == ch)  # fmt: skip
            stream.add(error_rate(lang, ref, hyp))
            if batch_model is not None:
                batch.add(error_rate(lang, ref, batch_text(batch_model, call, ch, lang)))
        print(f"  {cid}: stream {unit} so far {stream.rate:.3f}, compute {compute[-1]:.3f}x, "
              f"cpu {cpu[-1]:.3f}x", file=sys.stderr)  # fmt: skip
    print(f"streaming {unit}          {stream.rate:.3f}  ({stream.err}/{stream.n})  "
          f"(goal <= {0.12 if lang == 'zh' else 0.08})")  # fmt: skip
    if batch_model is not None:
        print(f"batch {unit} (vad_filter) {batch.rate:.3f}  ({batch.err}/{batch.n})")
        ratio = stream.rate / batch.rate if batch.rate else float("inf") if stream.rate else 1.0
        print(f"{unit} ratio stream/batch {ratio:.3f}  (goal <= 1.10)")
    print(f"finals on wrong channel {wrong}")
    print(
        f"compute / call duration p50 {pct(compute, 0.5):.3f}  max {max(compute):.3f}  (wall; goal <= 0.25)"
    )
    print(
        f"CPU / call duration     p50 {pct(cpu, 0.5):.3f}  max {max(cpu):.3f}  (process CPU-seconds, all threads)"
    )
    for ch in ("agent", "customer"):
        print(f"decode RTF {ch:8}      p50 {pct(rtf[ch], 0.5):.3f}  max {max(rtf[ch]):.3f}")
    p50, p95 = pct(decode, 0.5) * 1000, pct(decode, 0.95) * 1000
    print(f"decode per pass        p50 {p50:.0f} ms  p95 {p95:.0f} ms  (n={len(decode)})")
    print(f"partial cadence        p50 {pct(cadence, 0.5):.2f} s  p95 {pct(cadence, 0.95):.2f} s of speech")
    if a.realtime:
        delays: list[float] = []
        for i, cid in enumerate(ids[: a.realtime]):
            call = degrade(load_audio(a.work / f"{cid}.wav"), telephone, snr, seed=i)
            run = asyncio.run(run_stream(engine, call, cid, lang, realtime=True))
            delays += final_delays(run, turns_of(a.work, cid))
            print(f"  {cid} (realtime): {len(delays)} turns so far", file=sys.stderr)
        print(f"finalisation delay     p50 {pct(delays, 0.5):.2f} s  p95 {pct(delays, 0.95):.2f} s  "
              f"max {max(delays):.2f} s  (n={len(delays)}; goal p95 <= 1.0)")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--callset", type=Path, default=ROOT.parent / "shared" / "callsets" / "dev")
    ap.add_argument("--voices", choices=["espeak", "kokoro"], default="espeak")
    ap.add_argument("--kokoro-dir", type=Path, default=Path(os.environ["KOKORO_DIR"]) if os.environ.get("KOKORO_DIR") else None)  # fmt: skip
    ap.add_argument(
        "--work",
        type=Path,
        default=None,
        help="render cache (default: ~/.cache/agent-assist/renders/SET-VOICES)",
    )
    ap.add_argument("--ids", default="")
    ap.add_argument("--lang", choices=["en", "zh", "all"], default="en")
    ap.add_argument("--audio", default="clean", help=f"comma-separated conditions: {', '.join(CONDITIONS)}")
    ap.add_argument("--model", choices=["asr-en", "asr-multilingual"], default=None, help="English model")
    ap.add_argument("--realtime", type=int, default=0, metavar="N", help="also replay N calls in real time")
    ap.add_argument("--no-batch", action="store_true", help="skip the batch baseline")
    a = ap.parse_args()
    conditions = [c.strip() for c in a.audio.split(",") if c.strip()]
    if bad := [c for c in conditions if c not in CONDITIONS]:
        print(
            f"asr_stream: unknown --audio {', '.join(bad)} (choose from {', '.join(CONDITIONS)})",
            file=sys.stderr,
        )
        return 2
    if a.work is None:
        a.work = RENDERS / a.voices / a.callset.resolve().name
    calls = json.loads((a.callset / "calls.json").read_text())["calls"]
    langs = ["en", "zh"] if a.lang == "all" else [a.lang]
    chosen = [c for c in calls if c["lang"] in langs and (not a.ids or c["id"] in a.ids.split(","))]
    try:
        render(*renderer(a.voices, a.callset, a.kokoro_dir), a.callset, a.work, [c["id"] for c in chosen])
        asr = AsrSettings.from_env()
        if a.model:
            asr = AsrSettings(
                asr.device, asr.compute_type, asr.cpu_threads, asr.workers, asr.beam_size, a.model
            )
        engine = SpeechEngine(Settings(asr=asr, stream=StreamSettings.from_env()))
        for lang in langs:
            ids = [c["id"] for c in chosen if c["lang"] == lang]
            for condition in conditions if ids else []:
                bench_language(a, engine, lang, ids, condition)
    except (BenchSetupError, ModelNotFoundError) as e:
        print(f"asr_stream: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
