"""The language-model service: one model, loaded once, in its own worker thread, behind a bounded queue.

``LlmService.run(job)`` hands a blocking function of the loaded model to the worker and awaits its
result; the event loop never waits on the model. Two queues, served interactive first:

- *interactive* (a summary or reply someone is waiting for): at most ``queue_size`` waiting; a full
  queue refuses at once with ``LlmBusyError`` (the API answers 429). A job whose caller went away
  before it started is skipped.
- *background* (post-call notes): at most ``background_size`` waiting; when full the *oldest* is
  dropped and counted (``dropped``): an ended call then has no note, which the call record shows.

The model is optional. ``status()`` says whether it can be used (runtime and model present, not
turned off) without loading it; it loads on the first job (``mode = lazy``, the default) or when the
service starts (``startup``). A model that is missing or fails to load makes every job fail with
``LlmUnavailableError`` (the API answers 503 with its message) and the status says why.

Environment (``LlmConfig.from_env``): ``ASSIST_LLM`` (``lazy`` | ``startup`` | ``off``),
``ASSIST_LLM_MODEL`` (a GGUF file instead of the packaged model: ``models/registry.py``),
``ASSIST_LLM_THREADS`` (default 1 on up to 2 cores, else half the cores up to 4),
``ASSIST_LLM_DEVICE`` or ``ASSIST_DEVICE`` (``cpu`` | ``cuda``), ``ASSIST_LLM_QUEUE`` (4),
``ASSIST_LLM_CTX`` (4096), ``ASSIST_LLM_CACHE_MIB`` (256), ``ASSIST_LLM_POLL`` (0: idle runtime
threads sleep rather than spin), ``ASSIST_LLM_POSTCALL``
(``auto``: post-call notes while the model is loaded; ``on``; ``off``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from coach.llm.runtime import Device, RuntimeSettings, TextGenerator, XllamaGenerator, runtime_installed
from sidecar.kernel.errors import AssistError, ConfigError
from sidecar.kernel.settings import usable_cores

log = logging.getLogger("assist.llm")
T = TypeVar("T")
Mode = Literal["lazy", "startup", "off"]
PostCall = Literal["auto", "on", "off"]


class LlmUnavailableError(AssistError):
    """No language model here (not installed, turned off, failed to load)."""


class LlmBusyError(AssistError):
    """The interactive queue is full: try again shortly."""


def default_threads(cores: int | None = None) -> int:
    n = cores if cores is not None else usable_cores()
    return 1 if n <= 2 else min(4, n // 2)


def _int_env(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value}: expected {low}..{high}")
    return value


def _choice_env(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class LlmConfig:
    mode: Mode = "lazy"
    model_path: Path | None = None  # None: the registry's ``llm`` (ASSIST_LLM_MODEL, else the packages)
    threads: int = field(default_factory=default_threads)
    device: Device = "cpu"
    queue_size: int = 4
    background_size: int = 64
    n_ctx: int = 4096
    cache_ram_mib: int = 256
    poll: int = 0  # how much the runtime's idle threads spin (0..100; matters with threads > 1)
    postcall: PostCall = "auto"
    summary_tokens: int = 96
    postcall_tokens: int = 120
    reply_tokens: int = 60
    transcript_chars: int = 6000  # the transcript window of a prompt (about 1,500 tokens of English)
    wait_s: float = 300.0  # an interactive job not finished by then: the caller gets a timeout

    @classmethod
    def from_env(cls) -> LlmConfig:
        device = os.environ.get("ASSIST_LLM_DEVICE") or os.environ.get("ASSIST_DEVICE") or "cpu"
        if device not in ("cpu", "cuda"):
            raise ConfigError(f"ASSIST_LLM_DEVICE={device!r}: expected cpu or cuda")
        return cls(
            mode=_choice_env("ASSIST_LLM", "lazy", ("lazy", "startup", "off")),  # type: ignore[arg-type]
            threads=_int_env("ASSIST_LLM_THREADS", default_threads(), 1, 64),
            device=device,  # type: ignore[arg-type]
            queue_size=_int_env("ASSIST_LLM_QUEUE", 4, 1, 1000),
            n_ctx=_int_env("ASSIST_LLM_CTX", 4096, 512, 131072),
            cache_ram_mib=_int_env("ASSIST_LLM_CACHE_MIB", 256, 0, 65536),
            poll=_int_env("ASSIST_LLM_POLL", 0, 0, 100),
            postcall=_choice_env("ASSIST_LLM_POSTCALL", "auto", ("auto", "on", "off")),  # type: ignore[arg-type]
        )

    @property
    def runtime(self) -> RuntimeSettings:
        return RuntimeSettings(threads=self.threads, device=self.device, n_ctx=self.n_ctx,
                               cache_ram_mib=self.cache_ram_mib, poll=self.poll)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LlmStatus:
    available: bool  # jobs can run (the model is loaded or can be)
    loaded: bool
    reason: str  # why not available ("" when it is)
    model: str  # the GGUF file's name
    device: str
    threads: int
    queued: int
    background_queued: int
    dropped: int  # background jobs dropped because their queue was full
    load_s: float | None


@dataclass(eq=False)
class _Job(Generic[T]):
    work: Callable[[TextGenerator], T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]
    background: bool


def model_path_problem(config: LlmConfig) -> tuple[Path | None, str]:
    """Where the model is, or why it cannot be used, without loading or joining it."""
    if config.mode == "off":
        return None, "the language model is turned off (ASSIST_LLM=off)"
    if not runtime_installed():
        return None, "the language-model runtime is not installed: pip install xllamacpp"
    if config.model_path is not None:
        if not config.model_path.is_file():
            return None, f"no language model at {config.model_path}"
        return config.model_path, ""
    override = os.environ.get("ASSIST_LLM_MODEL")
    if override:
        path = Path(override).expanduser()
        return (path, "") if path.is_file() else (None, f"ASSIST_LLM_MODEL={override}: no such file")
    from models.llm_parts import part_files

    try:
        part_files()
    except AssistError as exc:
        return None, f"the language model is not installed: {exc}"
    return None, ""  # the packaged model: joined (once) when it loads


class LlmService:
    """The model's owner: a worker thread, two bounded queues, availability."""

    def __init__(self, config: LlmConfig,
                 loader: Callable[[LlmConfig], TextGenerator] | None = None) -> None:  # fmt: skip
        self.config = config
        self._loader = loader or _load_xllama
        self._cond = threading.Condition()
        self._interactive: deque[_Job[Any]] = deque()
        self._background: deque[_Job[Any]] = deque()
        self._closed = False
        self._model: TextGenerator | None = None
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.load_s: float | None = None
        self.busy_since: float | None = None
        path, problem = model_path_problem(config)
        self._path = path
        self._problem = problem
        self._model_name = (
            path.name if path else ("" if problem else "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is not None or self._problem:
            return
        self._thread = threading.Thread(target=self._serve, name="assist-llm", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking jobs; waiting jobs fail; the running one finishes (the thread is joined)."""
        with self._cond:
            self._closed = True
            waiting = list(self._interactive) + list(self._background)
            self._interactive.clear()
            self._background.clear()
            self._cond.notify_all()
        for job in waiting:
            _settle(job, error=LlmUnavailableError("the service is shutting down"))
        if self._thread is not None:
            self._thread.join(timeout_s)

    # ------------------------------------------------------------------ state

    @property
    def available(self) -> bool:
        return not self._problem and not self._closed

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def status(self) -> LlmStatus:
        with self._cond:
            queued, background = len(self._interactive), len(self._background)
        return LlmStatus(
            available=self.available,
            loaded=self.loaded,
            reason=self._problem,
            model=self._model_name,
            device=self.config.device,
            threads=self.config.threads,
            queued=queued,
            background_queued=background,
            dropped=self.dropped,
            load_s=None if self.load_s is None else round(self.load_s, 2),
        )

    def postcall_enabled(self) -> bool:
        if not self.available or self.config.postcall == "off":
            return False
        return self.config.postcall == "on" or self.loaded or self.config.mode == "startup"

    # ------------------------------------------------------------------ jobs

    async def run(self, work: Callable[[TextGenerator], T], *, background: bool = False) -> T:
        """``work(model)`` in the worker thread. ``LlmUnavailableError`` when there is no model,
        ``LlmBusyError`` when the interactive queue is full."""
        if not self.available:
            raise LlmUnavailableError(self._problem or "the language model is not available")
        loop = asyncio.get_running_loop()
        job: _Job[T] = _Job(work, loop, loop.create_future(), background)
        with self._cond:
            if background:
                if len(self._background) >= self.config.background_size:
                    _settle(
                        self._background.popleft(), error=LlmBusyError("dropped: the post-call queue is full")
                    )
                    self.dropped += 1
                self._background.append(job)
            else:
                if len(self._interactive) >= self.config.queue_size:
                    raise LlmBusyError(
                        f"the language model is busy ({len(self._interactive)} requests waiting): "
                        "try again in a few seconds"
                    )
                self._interactive.append(job)
            self._cond.notify()
        self.start()
        if background:
            return await job.future
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.config.wait_s)
        except (asyncio.CancelledError, TimeoutError):
            job.future.cancel()  # the caller went away or gave up: skipped if it has not started
            raise

    def _next(self) -> _Job[Any] | None:
        with self._cond:
            while not self._closed and not self._interactive and not self._background:
                self._cond.wait()
            if self._closed:
                return None
            return self._interactive.popleft() if self._interactive else self._background.popleft()

    def _serve(self) -> None:
        if self.config.mode == "startup":
            self._ensure_loaded()
        while (job := self._next()) is not None:
            if job.future.done():  # cancelled while waiting
                continue
            model = self._ensure_loaded()
            if model is None:
                _settle(job, error=LlmUnavailableError(self._problem))
                self._fail_waiting()
                continue
            self.busy_since = time.monotonic()
            try:
                result = job.work(model)
            except Exception as exc:  # the job's own error, handed to its caller
                _settle(job, error=exc)
            else:
                _settle(job, result=result)
            finally:
                self.busy_since = None
        if self._model is not None:
            self._model.close()
            self._model = None

    def _ensure_loaded(self) -> TextGenerator | None:
        if self._model is not None or self._problem:
            return self._model
        started = time.perf_counter()
        try:
            self._model = self._loader(self.config)
        except Exception as exc:
            self._problem = f"the language model could not be loaded: {exc}"
            log.error("language model not loaded: %s", type(exc).__name__)
            return None
        self.load_s = time.perf_counter() - started
        log.info("language model loaded", extra={"load_s": round(self.load_s, 2)})
        return self._model

    def _fail_waiting(self) -> None:
        with self._cond:
            waiting = list(self._interactive) + list(self._background)
            self._interactive.clear()
            self._background.clear()
        for job in waiting:
            _settle(job, error=LlmUnavailableError(self._problem))


def _settle(job: _Job[Any], *, result: Any = None, error: BaseException | None = None) -> None:
    def apply() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
        job.loop.call_soon_threadsafe(apply)


def _load_xllama(config: LlmConfig) -> TextGenerator:
    path = config.model_path
    if path is None:
        from models.registry import resolve_model

        path = resolve_model("llm")  # ASSIST_LLM_MODEL, else the packaged parts (joined once)
    return XllamaGenerator(path, config.runtime)
