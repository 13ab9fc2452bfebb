"""Speech recognition throughput with decodes batched across calls, against one by one.

    .venv/bin/python bench/decode_batch.py [--lang en|zh] [--requests 32] [--batch 1 4 8 16]
                                           [--workers 2] [--device cpu|cuda]

The requests are utterance-sized stretches (1.5-5 s, some with a forced prefix, as a final
decoded after its context is) of the recorded demo calls' channels (samples/demo), standing for
the decodes many calls have waiting at once. ``batch 1`` decodes them one by one on ``workers``
threads (what a worker did before); ``batch B`` hands each thread B at a time
(``WhisperRecognizer.recognize_batch``). Prints requests a second, audio seconds decoded per
wall second, the ratio to one by one, and how many transcripts equal the one-by-one ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar.asr import DecodeRequest, Hypothesis, WhisperRecognizer  # noqa: E402
from sidecar.audio import Float32, resample, to_float  # noqa: E402
from sidecar.engine import SpeechEngine  # noqa: E402
from sidecar.kernel.settings import AsrSettings, Settings  # noqa: E402
from sidecar.wavfile import read_wav  # noqa: E402


def demo_requests(recognizer: WhisperRecognizer, lang: str, count: int) -> list[DecodeRequest]:
    calls = sorted((ROOT / "samples" / "demo").glob(f"{lang}-*.wav"))
    if not calls:
        raise SystemExit(f"decode_batch: no {lang} demo calls under samples/demo")
    channels: list[Float32] = []
    for path in calls:
        wav = read_wav(path)
        channels.extend(to_float(resample(c, wav.sample_rate)) for c in wav.channels)
    out = []
    for k in range(count):
        audio = channels[k % len(channels)]
        dur = 1.5 + (k * 0.7) % 3.5
        start = (3.0 + 6.1 * (k // len(channels))) % max(1.0, audio.size / 16_000 - dur)
        piece = audio[int(start * 16_000) : int((start + dur) * 16_000)]
        prefix = None
        if k % 4 == 3:  # a final after its context: the context's words forced
            prefix = recognizer.recognize(piece[: piece.size // 2], lang=lang).text or None
        out.append(DecodeRequest(piece, lang, None, prefix))
    return out


def run(
    recognizer: WhisperRecognizer, requests: list[DecodeRequest], batch: int, workers: int
) -> tuple[float, list[Hypothesis]]:
    chunks = [requests[i : i + batch] for i in range(0, len(requests), batch)]

    def one(chunk: list[DecodeRequest]) -> list[Hypothesis]:
        if batch == 1:
            r = chunk[0]
            return [recognizer.recognize(r.audio, lang=r.lang, prompt=r.prompt, prefix=r.prefix)]
        return recognizer.recognize_batch(chunk)

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = [h for hyps in pool.map(one, chunks) for h in hyps]
    return time.perf_counter() - started, results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lang", default="en", choices=["en", "zh"])
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compute-type", default=None)
    args = ap.parse_args()
    compute = args.compute_type or ("float16" if args.device == "cuda" else "int8")
    engine = SpeechEngine(
        Settings(asr=AsrSettings(device=args.device, compute_type=compute, workers=args.workers))
    )
    recognizer = engine.recognizer(args.lang)
    assert isinstance(recognizer, WhisperRecognizer)
    requests = demo_requests(recognizer, args.lang, args.requests)
    audio_s = sum(r.audio.size for r in requests) / 16_000
    run(recognizer, requests[: args.workers], 1, args.workers)  # warm up
    base_s, base = run(recognizer, requests, 1, args.workers)
    print(
        f"{args.lang} {engine.model_key(args.lang)} on {args.device}, {args.workers} workers, "
        f"{len(requests)} requests, {audio_s:.0f} s of audio"
    )
    print(f"{'batch':>5}  {'req/s':>7}  {'audio s/s':>9}  {'vs 1':>5}  same transcripts")
    for b in args.batch:
        wall, hyps = (base_s, base) if b == 1 else run(recognizer, requests, b, args.workers)
        same = sum(h.text == g.text for h, g in zip(hyps, base, strict=True))
        print(
            f"{b:>5}  {len(requests) / wall:>7.2f}  {audio_s / wall:>9.1f}  {base_s / wall:>5.2f}  "
            f"{same}/{len(requests)}"
        )
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
