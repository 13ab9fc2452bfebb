"""The language model's runtime: one Protocol and its llama.cpp implementation (``xllamacpp``).

``XllamaGenerator`` loads a GGUF file once and answers one request at a time (the caller's worker
thread calls it; the native code releases the GIL, so the event loop keeps running). Settings that
matter on a small shared machine: one slot, ``threads`` for both prompt and generation, no busy
polling between threads (``poll = 0``: on a busy 2-core machine spinning threads cost more than they
gain; ``poll`` sets it), a bounded host-memory prompt cache (``cache_ram_mib``) so a call's grown transcript and
another call's prompt both reuse what was evaluated before, and every layer on the GPU when
``device == "cuda"`` (a CUDA build of xllamacpp is then needed; the pinned wheel is the CPU one).

xllamacpp also starts llama.cpp's HTTP server on an ephemeral 127.0.0.1 port; nothing here uses
it, and it gets a random API key that is never stored or printed, its web UI and slot endpoint off.
Its log level is errors only (it would otherwise print timings, and at higher levels prompts).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from coach.llm.prompts import Prompt

Device = Literal["cpu", "cuda"]


class GenerationError(RuntimeError):
    """The runtime failed on a request (not a capacity problem)."""


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    prompt_tokens: int  # evaluated for this request
    cached_tokens: int  # reused from the prompt cache
    generated_tokens: int
    prompt_s: float
    generate_s: float
    wall_s: float

    @property
    def prompt_tps(self) -> float:
        return self.prompt_tokens / self.prompt_s if self.prompt_s > 0 else 0.0

    @property
    def generate_tps(self) -> float:
        return self.generated_tokens / self.generate_s if self.generate_s > 0 else 0.0


class TextGenerator(Protocol):
    """A loaded model. ``generate`` blocks (call it from a worker thread); one caller at a time."""

    def generate(self, prompt: Prompt) -> Generation: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    threads: int = 1
    device: Device = "cpu"
    n_ctx: int = 4096
    cache_ram_mib: int = 256
    poll: int = 0  # 0..100: how much idle worker threads spin (llama.cpp's default is 50)
    seed: int = 7


def runtime_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("xllamacpp") is not None


class XllamaGenerator:
    def __init__(self, path: Path, settings: RuntimeSettings) -> None:
        import xllamacpp  # type: ignore[import-untyped]  # no type information

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = settings.n_ctx
        params.n_parallel = 1
        params.n_predict = 512
        params.cpuparams.n_threads = settings.threads
        params.cpuparams_batch.n_threads = settings.threads
        params.cpuparams.poll = settings.poll
        params.cpuparams_batch.poll = settings.poll
        params.n_gpu_layers = 999 if settings.device == "cuda" else 0
        params.cache_prompt = True
        params.cache_ram_mib = settings.cache_ram_mib
        params.warmup = False
        params.ui = False
        params.endpoint_slots = False
        params.endpoint_metrics = False
        params.verbosity = 0
        params.api_keys = [secrets.token_urlsafe(32)]
        params.sampling.seed = settings.seed
        params.sampling.temp = 0.0
        self.path = path
        self.settings = settings
        started = time.perf_counter()
        try:
            self._server: Any = xllamacpp.Server(params)
        except Exception as exc:
            raise GenerationError(f"cannot load the language model {path.name}: {exc}") from None
        self.load_s = time.perf_counter() - started

    def generate(self, prompt: Prompt) -> Generation:
        request = {
            "messages": [{"role": m.role, "content": m.content} for m in prompt.messages],
            "max_tokens": prompt.max_tokens,
            "temperature": 0.0,
            "seed": self.settings.seed,
            "grammar": prompt.grammar,
            "cache_prompt": True,
        }
        started = time.perf_counter()
        try:
            result = self._server.handle_chat_completions(request)
        except Exception as exc:
            raise GenerationError(f"the language model failed: {type(exc).__name__}") from None
        wall = time.perf_counter() - started
        if not isinstance(result, dict) or "choices" not in result:
            message = result.get("error", {}).get("message", "") if isinstance(result, dict) else ""
            raise GenerationError(f"the language model refused the request: {str(message)[:200]}")
        timings = result.get("timings", {})
        return Generation(
            text=str(result["choices"][0]["message"].get("content") or ""),
            prompt_tokens=int(timings.get("prompt_n", 0)),
            cached_tokens=int(timings.get("cache_n", 0)),
            generated_tokens=int(timings.get("predicted_n", 0)),
            prompt_s=float(timings.get("prompt_ms", 0.0)) / 1000,
            generate_s=float(timings.get("predicted_ms", 0.0)) / 1000,
            wall_s=wall,
        )

    def close(self) -> None:
        self._server = None
