"""Models and worker threads shared by every call in the process.

Each model is loaded once per process (``load_whisper`` / ``load_vad`` are cached) and lazily,
on the first call that needs it. Model calls run in the engine's threads, never on the event
loop: decodes in the speech pool, every channel's VAD frames batched in a thread of their own
(``sidecar.vad_batch``); CTranslate2 and onnxruntime release the GIL while they work.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from models.registry import resolve_model
from sidecar.asr import DecodeOptions, DecodeRequest, Hypothesis, Recognizer, WhisperRecognizer
from sidecar.decode_batch import BatchRecognizer, Decode, DecodeScheduler
from sidecar.kernel.errors import ModelNotFoundError
from sidecar.kernel.settings import AsrSettings, Settings
from sidecar.vad import SileroVad
from sidecar.vad_batch import BatchedVadStream, VadBatcher

log = logging.getLogger(__name__)
T = TypeVar("T")


@cache
def load_whisper(path: Path, device: str, compute_type: str, cpu_threads: int, workers: int) -> Any:
    """A faster-whisper ``WhisperModel``, once per process and configuration."""
    from faster_whisper import WhisperModel

    log.info("loading whisper model", extra={"model_path": str(path), "device": device})
    try:
        model = WhisperModel(
            str(path), device=device, compute_type=compute_type, cpu_threads=cpu_threads, num_workers=workers
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelNotFoundError(f"cannot load the Whisper model at {path}: {exc}") from None
    return model


@cache
def load_vad(path: Path) -> SileroVad:
    try:
        return SileroVad(path)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelNotFoundError(f"cannot load the VAD model at {path}: {exc}") from None


class SpeechEngine:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self._pool = ThreadPoolExecutor(max_workers=self.settings.asr.workers, thread_name_prefix="asr")
        self._recognizers: dict[str, Recognizer] = {}
        # calls that start together (several taps at once) load each model once, not once each
        self._loading = threading.Lock()
        self._vad_batcher: VadBatcher | None = None
        self._schedulers: dict[str, DecodeScheduler] = {}
        self._decoding = 0  # decodes asked for and not answered yet, all calls (loop threads only)

    @property
    def vad(self) -> SileroVad:
        return load_vad(resolve_model("vad"))

    @property
    def vad_batcher(self) -> VadBatcher:
        """Every channel's VAD frames of this engine's calls, batched in one thread."""
        if self._vad_batcher is None:
            self._vad_batcher = VadBatcher(self.vad)
        return self._vad_batcher

    def vad_stream(self) -> BatchedVadStream:
        """A new channel's VAD, through the batcher."""
        return self.vad_batcher.stream()

    def model_key(self, lang: str) -> str:
        return self.settings.asr.english_model if lang == "en" else "asr-multilingual"

    def recognizer(self, lang: str) -> Recognizer:
        """English: the configured English model; ``zh`` and ``auto``: the multilingual one."""
        key = self.model_key(lang)
        recognizer = self._recognizers.get(key)
        if recognizer is not None:
            return recognizer
        with self._loading:
            recognizer = self._recognizers.get(key)
            if recognizer is None:
                a: AsrSettings = self.settings.asr
                model = load_whisper(resolve_model(key), a.device, a.compute_type, a.cpu_threads, a.workers)
                recognizer = self._recognizers[key] = WhisperRecognizer(
                    model, DecodeOptions(beam_size=a.beam_size)
                )
        return recognizer

    @property
    def decodes_waiting(self) -> int:
        """Decodes waiting for a free worker: the recogniser is behind (partials can wait)."""
        return max(0, self._decoding - self.settings.asr.workers)

    @property
    def saturated(self) -> bool:
        """Every speech worker is decoding: the next decode would wait for one."""
        return self._decoding >= self.settings.asr.workers

    def decoder(self, lang: str) -> Decode:
        """How a channel in ``lang`` decodes: in the speech pool, one by one, or (with
        ``ASSIST_ASR_BATCH`` above 1) through the model's scheduler, batched across calls."""
        recognizer = self.recognizer(lang)
        a = self.settings.asr
        run: Decode
        if a.batch > 1 and isinstance(recognizer, BatchRecognizer):
            key = self.model_key(lang)
            with self._loading:
                scheduler = self._schedulers.get(key)
                if scheduler is None:
                    scheduler = self._schedulers[key] = DecodeScheduler(
                        recognizer, self._pool, max_batch=a.batch, workers=a.workers
                    )
            run = scheduler.decode
        else:

            async def run(request: DecodeRequest) -> Hypothesis:
                return await self.run(
                    lambda: recognizer.recognize(
                        request.audio, lang=request.lang, prompt=request.prompt, prefix=request.prefix
                    )
                )

        async def counted(request: DecodeRequest) -> Hypothesis:
            self._decoding += 1
            try:
                return await run(request)
            finally:
                self._decoding -= 1

        return counted

    def preload(self, lang: str) -> None:
        """Load what a call in ``lang`` needs now, so the first segment does not wait for it."""
        with self._loading:
            _ = self.vad
        self.recognizer(lang)

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._vad_batcher is not None:
            self._vad_batcher.close()
