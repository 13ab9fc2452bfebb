"""Benchmark SSE fan-out: many subscribers on one call's event stream of the real service.

    .venv/bin/python bench/sse_fanout.py --subscribers 1000 --rate 20 --seconds 20 \
        [--client-procs 2] [--history 0] [--server-loop asyncio|uvloop] [--pin] \
        [--server-profile OUT.pstats] [--json OUT.json]

What runs, all on loopback (127.0.0.1):

- The server, in its own process: the app of ``assist serve`` (``create_app``) under uvicorn, started
  as ``assist serve`` starts it (``make_server``, uvloop, httptools, no access log). Its
  services are built light, without models: the in-memory bus, one supervisor token, an in-memory
  snippet store, the coach with no embedder (the shipped rule pack, no semantic matching), no
  knowledge. The publisher runs on the server's own event loop (the in-memory bus is in-process):
  it publishes ``call.started`` (and ``--history`` events) before anyone subscribes, waits for the
  go signal, then publishes ``--rate`` events a second for ``--seconds`` (a fixed schedule of
  transcript partials and finals, emotion, alerts and suggestions, 300-600 bytes of JSON each), then
  ``call.ended``, which ends every stream.
- The subscribers, in ``--client-procs`` processes (uvloop): raw asyncio streams (one HTTP/1.1
  connection each, ``Authorization: Bearer``), a small chunked-encoding and SSE parser: about half
  the CPU per delivered event of httpx's ``aiter_lines`` (24 against 50 us, measured against a
  trivial SSE server), which matters when clients and server share two cores. A subscriber counts
  as connected once it has the response headers and the stream's first bytes; the go signal is
  given when every subscriber is connected (the server's ``assist_sse_clients`` gauge is reported
  too). ``--history N`` publishes N events first and subscribers resume after them
  (``Last-Event-ID``), as a browser reconnecting late in a long call does.

Measured:

- delivery latency: the client's wall clock when the bytes were read minus the event's
  ``emitted_at`` (stamped by the bus at publish; rounded to the millisecond in the JSON), over every
  (subscriber, event) pair of the measured stream; also the time until the last subscriber has an
  event, and the publisher's own lateness against its schedule (a saturated server loop runs the
  publisher late too, which ``emitted_at`` alone would hide, so latency from the schedule is shown);
- events/s delivered (all subscribers) over the stream's span; connection setup (connect and
  headers, and until the stream's first bytes) per subscriber and for all of them;
- server RSS (idle, all connected, peak) and CPU time over the stream; client loop lag and CPU;
  for the server's loop thread and each client, the time spent runnable but waiting for a CPU
  (``/proc/thread-self/schedstat``): on a shared machine that, not the service, can be the tail;
- failures: every subscriber must receive every event exactly once, in order, ending with
  ``call.ended``: missing, duplicated and out-of-order seqs, ``error`` messages, streams cut short,
  failed connections. Any of them: exit status 1.

Prints a table; ``--json`` also writes a JSON summary. Progress (connected count) goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import resource
import secrets
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if TYPE_CHECKING:
    from sidecar.kernel.events import Event

HOST = "127.0.0.1"
CALL_ID = "bench-sse-fanout"
GOAL_P99_MS = 100.0


@dataclass(frozen=True)
class Plan:
    port: int
    token: str
    subscribers: int
    rate: float
    seconds: float
    history: int
    drain_s: float
    connect_concurrency: int
    server_loop: str
    data_dir: str
    server_cpus: tuple[int, ...] = ()
    client_cpus: tuple[int, ...] = ()

    @property
    def events(self) -> int:
        """Events of the measured stream (``call.ended`` not counted)."""
        return max(1, round(self.rate * self.seconds))

    @property
    def resume_after(self) -> int:
        """Subscribers start after this seq: 0 (everything, from ``call.started``) without history."""
        return self.history + 1 if self.history else 0

    @property
    def first_seq(self) -> int:
        return self.resume_after + 1

    @property
    def last_seq(self) -> int:
        return self.history + 1 + self.events + 1  # call.started, history, the stream, call.ended

    @property
    def stream_first_seq(self) -> int:
        """The first event published after the go signal."""
        return self.history + 2


# -- what the publisher sends ----------------------------------------------------------------------

_TEXT = (
    "thanks for calling I can see the payment went out twice on the fourth so I will raise a refund "
    "for the duplicate charge today and you should see it back on your card within three to five "
    "working days is there anything else I can help you with"
)
_WORDS = tuple(_TEXT.split())


def make_event(i: int, call_time: float) -> Event:
    """The ``i``-th event of the stream: a mix like a live call's (mostly partials)."""
    from sidecar.kernel.events import (
        Alert,
        Emotion,
        Event,
        Prosody,
        Suggestion,
        TranscriptFinal,
        TranscriptPartial,
        Word,
    )

    channel: Any = "agent" if (i // 10) % 2 == 0 else "customer"
    start = (i * 3) % (len(_WORDS) - 8)
    words = tuple(
        Word(w, round(call_time - 2.0 + 0.31 * k, 3), round(call_time - 1.75 + 0.31 * k, 3), 0.91)
        for k, w in enumerate(_WORDS[start : start + 5])
    )
    text = " ".join(w.text for w in words)
    segment = i // 10
    kind = i % 10
    if kind == 4:
        prosody = Prosody(2.1, -23.4, -9.8, 182.5, 4.2, 0.71, 4.4, 2.6)
        payload: Any = TranscriptFinal(text, words[:3], "en", segment, prosody)
        etype: Any = "transcript.final"
    elif kind == 5:
        payload = Emotion(-0.21, -0.35, "negative", ("complaint", "repeated contact"), False)
        etype = "emotion"
    elif kind == 8 and segment % 2 == 0:
        payload = Alert(
            "false_promise", "serious", "ecommerce.false_promise.delivery",
            "Don't guarantee a delivery day or time slot: the courier controls it. Give the estimate.",
            "it will be there tomorrow guaranteed", reason="phrase: guaranteed to arrive",
        )  # fmt: skip
        etype = "alert"
    elif kind == 8:
        payload = Suggestion(
            "kb-refund-duplicate", "Refund a duplicate card payment",
            "Check both payments settled, raise a refund for the duplicate; 3-5 working days.",
            0.83, "intent: billing_dispute", 3,
        )  # fmt: skip
        etype = "suggestion"
    else:
        payload = TranscriptPartial(text, " ".join(text.split()[:2]), words, "en", segment)
        etype = "transcript.partial"
    return Event(etype, CALL_ID, channel, round(call_time - 2.0, 3), round(call_time, 3), payload)


# -- the server process ----------------------------------------------------------------------------


def rss_mib(pid: int | str = "self") -> float:
    """Resident set size now (VmRSS) of a process, in MiB."""
    return _proc_status_kib(pid, "VmRSS:") / 1024


def _proc_status_kib(pid: int | str, key: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def sched_s() -> tuple[float, float]:
    """This thread's time on a CPU and time runnable but waiting for one (/proc/self/schedstat), s."""
    try:
        run_ns, wait_ns, _ = Path("/proc/thread-self/schedstat").read_text().split()
        return int(run_ns) / 1e9, int(wait_ns) / 1e9
    except (OSError, ValueError):
        return float("nan"), float("nan")


def raise_fd_limit(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return soft


def _pin(cpus: tuple[int, ...]) -> None:
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))


def server_main(plan: Plan, ready: Any, go: Any, stop: Any, results: Any, profile: str | None) -> None:
    """The server process: the service under uvicorn, and the publisher on its loop."""
    _pin(plan.server_cpus)
    raise_fd_limit(plan.subscribers * 2 + 256)
    import logging

    from coach.engine import Coach
    from knowledge.feedback import FeedbackLog
    from knowledge.store import SnippetStore
    from sidecar.kernel.bus import InMemoryBus
    from sidecar.kernel.events import CallEnded, CallStarted, Event
    from sidecar.service.app import create_app
    from sidecar.service.auth import Principal, TokenEntry, TokenTable
    from sidecar.service.config import ServiceConfig, Services
    from sidecar.service.context import AppContext
    from sidecar.service.logs import configure
    from sidecar.service.serve import make_server

    configure(logging.WARNING)  # `assist serve` logs at INFO: one access line per finished request
    cancelled = Counter[str]()

    def count_cancelled(record: logging.LogRecord) -> bool:
        # a stream still open at shutdown (the run was stopped) is cancelled by uvicorn, which logs
        # one error each: counted and reported instead of a thousand lines
        asgi = record.getMessage().startswith("Exception in ASGI application")
        if asgi and record.exc_info and record.exc_info[0] is asyncio.CancelledError:
            cancelled["n"] += 1
            return False
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(count_cancelled)
    tokens = TokenTable([TokenEntry(plan.token, Principal("bench-supervisor", "supervisor"))])
    config = ServiceConfig(
        data_dir=Path(plan.data_dir), recordings_dir=None, kb_seed=None, tokens=tokens,
        knowledge=False, preload_lang=None,
    )  # fmt: skip
    store = SnippetStore(":memory:")
    services = Services(
        config=config, bus=InMemoryBus(), tokens=tokens, store=store, feedback=FeedbackLog(store),
        coach=Coach(embedder=None), knowledge=None, policy=None,
    )  # fmt: skip
    app = create_app(config, services)
    server = make_server(app, HOST, plan.port)  # as `assist serve` makes it
    server.config.backlog = max(2048, plan.subscribers * 2)
    report: dict[str, Any] = {}

    def sse_clients(ctx: AppContext) -> float:
        value = ctx.metrics.registry.get_sample_value("assist_sse_clients", {"stream": "call"})
        return float(value or 0.0)

    async def publisher() -> None:
        while not server.started:  # noqa: ASYNC110 (uvicorn has only a flag)
            await asyncio.sleep(0.05)
        ctx: AppContext = app.state.ctx
        bus = ctx.services.bus
        started = CallStarted(
            "bench", "en", ("agent", "customer"), True, {"agent_id": "bench-agent", "queue": "bench"}
        )
        await bus.publish(Event("call.started", CALL_ID, None, 0.0, 0.0, started))
        for i in range(plan.history):
            await bus.publish(make_event(i, 2.0 + i / plan.rate))

        def on_board() -> int:
            state = ctx.board.get(CALL_ID)
            return state.last_seq if state is not None else 0

        while on_board() < plan.history + 1:  # noqa: ASYNC110 (the board folds the bus in a task)
            await asyncio.sleep(0.01)
        report["rss_idle_mib"] = rss_mib()
        ready.set()
        while not go.is_set() and not stop.is_set():  # noqa: ASYNC110 (a multiprocessing event)
            await asyncio.sleep(0.01)
        report["sse_clients_at_go"] = sse_clients(ctx)
        report["rss_connected_mib"] = rss_mib()
        peak = [report["rss_connected_mib"]]

        async def sample_rss() -> None:
            while True:
                peak.append(rss_mib())
                await asyncio.sleep(0.25)

        sampler = asyncio.create_task(sample_rss())
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        cpu0, wall0, sched0 = time.process_time(), time.perf_counter(), sched_s()
        t0 = time.time() + 0.05
        schedule: list[tuple[int, float, float]] = []  # seq, scheduled wall time, emitted_at
        base = 2.0 + plan.history / plan.rate
        for i in range(plan.events + 1):
            due = t0 + i / plan.rate
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if i < plan.events:
                event = make_event(plan.history + i, base + i / plan.rate)
            else:
                ended = CallEnded("completed", round(base + i / plan.rate, 3), {})
                event = Event("call.ended", CALL_ID, None, 0.0, round(base + i / plan.rate, 3), ended)
            stamped = await bus.publish(event)
            schedule.append((stamped.seq, due, stamped.emitted_at))
        report["publish_s"] = round(time.perf_counter() - wall0, 3)
        while sse_clients(ctx) > 0 and not stop.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        report["drained_s"] = round(time.perf_counter() - wall0, 3)
        report["cpu_s"] = round(time.process_time() - cpu0, 3)
        sched1 = sched_s()
        report["sched_run_s"] = round(sched1[0] - sched0[0], 3)
        report["sched_wait_s"] = round(sched1[1] - sched0[1], 3)
        report["sse_clients_left"] = sse_clients(ctx)
        for _ in range(500):  # stopped early: let the clients' disconnects end the streams first
            if sse_clients(ctx) == 0:
                break
            await asyncio.sleep(0.02)
        if prof is not None and profile:
            prof.disable()
            prof.dump_stats(profile)
        sampler.cancel()
        report["rss_peak_mib"] = round(max(peak), 1)
        report["vm_hwm_mib"] = round(_proc_status_kib("self", "VmHWM:") / 1024, 1)
        report["schedule"] = schedule
        report["event_bytes"] = [
            len(make_event(plan.history + i, base).to_json()) for i in range(plan.events)
        ]
        server.should_exit = True

    def publisher_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            report["error"] = repr(task.exception())
            server.should_exit = True

    async def run() -> None:
        task = asyncio.create_task(publisher())
        task.add_done_callback(publisher_done)
        try:
            await server.serve()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        if plan.server_loop == "uvloop":
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(run())
        else:
            asyncio.run(run())
    finally:
        report["streams_cancelled_at_shutdown"] = cancelled["n"]
        results.put(report)


# -- the client processes --------------------------------------------------------------------------


@dataclass
class Subscriber:
    """What one subscriber saw."""

    connect_s: float = float("nan")  # TCP connect + request until the response headers
    subscribed_s: float = float("nan")  # ... until the stream's first bytes
    status: int = 0
    error: str = ""
    ended: bool = False  # saw call.ended
    errors: int = 0  # `event: error` messages (a lagged subscription)
    corrupt: int = 0  # the data's seq is not the id
    seqs: list[int] = field(default_factory=list)
    recv: list[float] = field(default_factory=list)  # for the measured events
    emitted: list[float] = field(default_factory=list)


class SseParser:
    """A chunked HTTP body in, SSE messages (id, event, data) out."""

    def __init__(self) -> None:
        self.raw = bytearray()
        self.body = bytearray()
        self.chunk_left = -1
        self.done = False

    def feed(self, data: bytes) -> list[tuple[int | None, bytes, bytes]]:
        self.raw += data
        while not self.done:
            if self.chunk_left < 0:
                end = self.raw.find(b"\r\n")
                if end < 0:
                    break
                size = int(bytes(self.raw[:end]).split(b";")[0], 16)
                del self.raw[: end + 2]
                if size == 0:
                    self.done = True
                    break
                self.chunk_left = size
            if len(self.raw) < self.chunk_left + 2:
                break
            self.body += self.raw[: self.chunk_left]
            del self.raw[: self.chunk_left + 2]
            self.chunk_left = -1
        out: list[tuple[int | None, bytes, bytes]] = []
        while (end := self.body.find(b"\n\n")) >= 0:
            block = bytes(self.body[:end])
            del self.body[: end + 2]
            id_: int | None = None
            event = data = b""
            for line in block.split(b"\n"):
                if line.startswith(b"id: "):
                    id_ = int(line[4:])
                elif line.startswith(b"event: "):
                    event = line[7:]
                elif line.startswith(b"data: "):
                    data = line[6:]
            if id_ is not None or event:
                out.append((id_, event, data))
        return out


def _number_after(data: bytes, key: bytes) -> float:
    start = data.find(key)
    if start < 0:
        return float("nan")
    start += len(key)
    end = start
    while end < len(data) and data[end] in b"0123456789.-e":
        end += 1
    return float(data[start:end])


async def subscribe(
    plan: Plan, sub: Subscriber, gate: asyncio.Semaphore, connected: Callable[[], None]
) -> None:
    path = f"/v1/calls/{CALL_ID}/events"
    head = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{plan.port}\r\nAuthorization: Bearer {plan.token}\r\n"
    head += "Accept: text/event-stream\r\nCache-Control: no-cache\r\n"
    if plan.resume_after:
        head += f"Last-Event-ID: {plan.resume_after}\r\n"
    request = (head + "\r\n").encode()
    parser = SseParser()
    writer: asyncio.StreamWriter | None = None
    try:
        async with gate:
            t0 = time.perf_counter()
            reader, writer = await asyncio.open_connection(HOST, plan.port, limit=1 << 20)
            writer.write(request)
            headers = await reader.readuntil(b"\r\n\r\n")
            sub.connect_s = time.perf_counter() - t0
            sub.status = int(headers.split(b" ", 2)[1])
            if sub.status != 200:
                sub.error = f"HTTP {sub.status}"
                return
            if b"transfer-encoding: chunked" not in headers.lower():
                sub.error = "the response is not chunked"
                return
            first = await reader.read(65536)
            sub.subscribed_s = time.perf_counter() - t0
        connected()
        messages = parser.feed(first)
        now = time.time()
        while True:
            for id_, event, data in messages:
                if event == b"error":
                    sub.errors += 1
                if id_ is None:
                    continue
                sub.seqs.append(id_)
                if _number_after(data, b'"seq":') != id_:
                    sub.corrupt += 1
                if id_ >= plan.stream_first_seq:
                    sub.recv.append(now)
                    sub.emitted.append(_number_after(data, b'"emitted_at":'))
                if event == b"call.ended":
                    sub.ended = True
            if sub.ended or parser.done:
                return
            data = await reader.read(65536)
            now = time.time()
            if not data:
                return
            messages = parser.feed(data)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        sub.error = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def client_main(plan: Plan, index: int, count: int, connected: Any, stop: Any, results: Any) -> None:
    """One client process: ``count`` subscribers on one loop (uvloop when installed)."""
    _pin(plan.client_cpus)
    raise_fd_limit(count + 256)
    subs = [Subscriber() for _ in range(count)]
    lag: list[float] = []
    cpu: dict[str, float] = {}

    def one_connected() -> None:
        with connected.get_lock():
            connected.value += 1

    async def watch_lag() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lag.append(time.perf_counter() - t - 0.01)

    async def run() -> None:
        gate = asyncio.Semaphore(max(1, plan.connect_concurrency))
        tasks = [asyncio.create_task(subscribe(plan, s, gate, one_connected)) for s in subs]
        watcher = asyncio.create_task(watch_lag())
        cpu0, sched0 = time.process_time(), sched_s()
        pending = set(tasks)
        while pending and not stop.is_set():
            _, pending = await asyncio.wait(pending, timeout=0.2)
        for task in pending:
            task.cancel()
            if not subs[tasks.index(task)].error:
                subs[tasks.index(task)].error = "stopped: no call.ended within --drain-seconds"
        await asyncio.gather(*tasks, return_exceptions=True)
        watcher.cancel()
        cpu["cpu_s"] = time.process_time() - cpu0
        sched1 = sched_s()
        cpu["sched_wait_s"] = sched1[1] - sched0[1]

    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run())
    except ImportError:
        asyncio.run(run())
    seqs = np.fromiter((q for s in subs for q in s.seqs if q >= plan.stream_first_seq), dtype=np.int64)
    results.put(
        {
            "index": index,
            "subs": [{k: v for k, v in asdict(s).items() if k not in ("recv", "emitted")} for s in subs],
            "seq": seqs,
            "recv": np.fromiter((t for s in subs for t in s.recv), dtype=np.float64),
            "emitted": np.fromiter((t for s in subs for t in s.emitted), dtype=np.float64),
            "lag": np.asarray(lag, dtype=np.float64),
            "cpu_s": cpu.get("cpu_s", float("nan")),
            "sched_wait_s": cpu.get("sched_wait_s", float("nan")),
            "rss_mib": rss_mib(),
        }
    )


# -- the parent: start everything, give the signal, merge and report ---------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def ms(values: NDArray[np.float64] | Sequence[float], q: float) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return round(float(np.percentile(arr, q)) * 1000, 2) if arr.size else float("nan")


def spread(values: NDArray[np.float64] | Sequence[float]) -> dict[str, float]:
    return {"p50": ms(values, 50), "p95": ms(values, 95), "p99": ms(values, 99), "max": ms(values, 100)}


def failures_of(sub: dict[str, Any], plan: Plan) -> dict[str, int]:
    """Per subscriber: every seq from ``first_seq`` to ``last_seq`` once, in order, then the end."""
    seqs: list[int] = sub["seqs"]
    seen = Counter(seqs)
    expected = range(plan.first_seq, plan.last_seq + 1)
    connected = sub["status"] == 200 and not np.isnan(sub["subscribed_s"])
    return {
        "connect_failed": int(not connected),
        "cut_short": int(connected and not sub["ended"]),
        "missing": sum(1 for q in expected if q not in seen),
        "duplicated": sum(c - 1 for c in seen.values() if c > 1),
        "out_of_order": sum(1 for a, b in itertools.pairwise(seqs) if b <= a),
        "unexpected": sum(c for q, c in seen.items() if q not in expected),
        "error_messages": sub["errors"],
        "corrupt": sub["corrupt"],
    }


def wait_for(pred: Callable[[], bool], timeout_s: float, what: str, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if not alive():
            raise SystemExit(f"sse_fanout: the server process died while waiting for {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"sse_fanout: timed out waiting for {what}")
        time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=1000, help="concurrent SSE subscribers")
    ap.add_argument("--rate", type=float, default=20.0, help="events published per second")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long the measured stream runs")
    ap.add_argument("--client-procs", type=int, default=2, help="client processes (subscribers split evenly)")
    ap.add_argument(
        "--history", type=int, default=0,
        help="events published before anyone subscribes; subscribers then resume after them (Last-Event-ID)",
    )  # fmt: skip
    ap.add_argument("--server-loop", choices=("asyncio", "uvloop"), default="uvloop",
                    help="the server's event loop (uvloop: as `assist serve` runs)")  # fmt: skip
    ap.add_argument("--pin", action="store_true", help="pin the server to CPU 0, the clients to the others")
    ap.add_argument(
        "--connect-concurrency", type=int, default=100, help="connections opening at once, per process"
    )
    ap.add_argument(
        "--connect-timeout", type=float, default=60.0, help="seconds for every subscriber to connect"
    )
    ap.add_argument(
        "--drain-seconds", type=float, default=30.0, help="seconds after the stream for it to reach all"
    )
    ap.add_argument(
        "--server-profile", type=Path, default=None, help="cProfile the server's loop over the stream"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the summary as JSON here")
    args = ap.parse_args(argv)
    if args.subscribers < 1 or args.client_procs < 1 or args.rate <= 0 or args.seconds <= 0:
        ap.error("--subscribers, --client-procs, --rate and --seconds must be positive")
    procs = min(args.client_procs, args.subscribers)
    ncpu = os.cpu_count() or 1
    server_cpus: tuple[int, ...] = ()
    client_cpus: tuple[int, ...] = ()
    if args.pin and ncpu >= 2:
        server_cpus, client_cpus = (0,), tuple(range(1, ncpu))
    fd_limit = raise_fd_limit(args.subscribers * 2 + 256)
    load_before = os.getloadavg()[0]
    ctx = mp.get_context("spawn")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sse-fanout-") as tmp:
        plan = Plan(
            port=free_port(), token=f"bench-{secrets.token_urlsafe(16)}", subscribers=args.subscribers,
            rate=args.rate, seconds=args.seconds, history=args.history, drain_s=args.drain_seconds,
            connect_concurrency=args.connect_concurrency, server_loop=args.server_loop, data_dir=tmp,
            server_cpus=server_cpus, client_cpus=client_cpus,
        )  # fmt: skip
        ready, go, stop = ctx.Event(), ctx.Event(), ctx.Event()
        server_q: Any = ctx.Queue()
        client_q: Any = ctx.Queue()
        connected: Any = ctx.Value("i", 0)
        profile = str(args.server_profile.resolve()) if args.server_profile else None
        server = ctx.Process(
            target=server_main, args=(plan, ready, go, stop, server_q, profile), name="sse-server"
        )
        server.start()
        clients: list[SpawnProcess] = []
        try:
            print(f"starting the server on {HOST}:{plan.port} ...", file=sys.stderr, flush=True)
            wait_for(ready.is_set, 120.0, "the server to start", server.is_alive)
            server_start_s = time.perf_counter() - t_start
            shares = [
                args.subscribers // procs + (1 if i < args.subscribers % procs else 0) for i in range(procs)
            ]
            t_connect = time.perf_counter()
            for i, n in enumerate(shares):
                proc = ctx.Process(
                    target=client_main, args=(plan, i, n, connected, stop, client_q), name=f"sse-client-{i}"
                )
                proc.start()
                clients.append(proc)
            deadline = time.monotonic() + args.connect_timeout
            last_print = 0.0
            results: list[dict[str, Any]] = []
            while connected.value < args.subscribers and time.monotonic() < deadline:
                if not server.is_alive():
                    raise SystemExit("sse_fanout: the server process died while subscribers connected")
                if all(not p.is_alive() for p in clients):
                    break
                with contextlib.suppress(Exception):
                    results.append(client_q.get(timeout=0.05))  # a process whose subscribers all failed
                if time.monotonic() - last_print >= 1.0:
                    print(f"connected {connected.value}/{args.subscribers}", file=sys.stderr, flush=True)
                    last_print = time.monotonic()
            connect_all_s = time.perf_counter() - t_connect
            print(f"connected {connected.value}/{args.subscribers} in {connect_all_s:.2f} s; streaming "
                  f"{plan.events} events at {plan.rate:g}/s ...", file=sys.stderr, flush=True)  # fmt: skip
            go.set()
            deadline = time.monotonic() + args.seconds + args.drain_seconds + 1.0
            while len(results) < procs and time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    results.append(client_q.get(timeout=0.2))
            stop.set()
            while len(results) < procs:
                try:
                    results.append(client_q.get(timeout=20.0))
                except Exception:
                    raise SystemExit("sse_fanout: a client process gave no result") from None
            try:
                srv: dict[str, Any] = server_q.get(timeout=30.0)
            except Exception:
                raise SystemExit("sse_fanout: the server process gave no result") from None
        finally:
            stop.set()
            for p in [*clients, server]:
                p.join(timeout=10.0)
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=5.0)
    summary = summarise(plan, args, results, srv, procs, connect_all_s, server_start_s, fd_limit, ncpu)
    summary["wall_s"] = round(time.perf_counter() - t_start, 2)
    summary["loadavg_1min"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    print_table(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if summary["failures"]["subscribers_failed"] else 0


def summarise(
    plan: Plan, args: argparse.Namespace, results: list[dict[str, Any]], srv: dict[str, Any], procs: int,
    connect_all_s: float, server_start_s: float, fd_limit: int, ncpu: int,
) -> dict[str, Any]:  # fmt: skip
    subs = [s for r in sorted(results, key=lambda r: r["index"]) for s in r["subs"]]
    seq = np.concatenate([r["seq"] for r in results])
    recv = np.concatenate([r["recv"] for r in results])
    emitted = np.concatenate([r["emitted"] for r in results])
    latency = recv - emitted
    schedule = {int(s): (due, em) for s, due, em in srv.get("schedule", [])}
    due = np.array([schedule.get(int(q), (np.nan, np.nan))[0] for q in seq], dtype=np.float64)
    publisher_late = np.array([em - d for d, em in schedule.values()], dtype=np.float64)
    # per event: when the last subscriber had it
    per_event_last: list[float] = []
    if seq.size:
        order = np.argsort(seq, kind="stable")
        s_sorted, l_sorted = seq[order], latency[order]
        starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
        per_event_last = list(np.maximum.reduceat(l_sorted, starts))
    fails = [failures_of(s, plan) for s in subs]
    totals = {k: sum(f[k] for f in fails) for k in fails[0]} if fails else {}
    totals["subscribers_failed"] = sum(1 for f in fails if any(f.values()))
    errors = Counter(s["error"].split(":")[0] for s in subs if s["error"])
    span = (
        float(recv.max() - min(em for _, em in schedule.values())) if recv.size and schedule else float("nan")
    )
    connect = [s["connect_s"] for s in subs]
    first = [s["subscribed_s"] for s in subs]
    lag = np.concatenate([r["lag"] for r in results]) if results else np.array([])
    sizes = srv.get("event_bytes", [0])
    p99 = ms(latency, 99)
    return {
        "subscribers": plan.subscribers,
        "client_procs": procs,
        "server_loop": plan.server_loop,
        "pinned": bool(plan.server_cpus),
        "cpus": ncpu,
        "fd_limit": fd_limit,
        "rate": plan.rate,
        "seconds": plan.seconds,
        "history": plan.history,
        "events": plan.events + 1,  # with call.ended
        "event_json_bytes": {"mean": round(float(np.mean(sizes)), 1), "min": min(sizes), "max": max(sizes)},
        "server_start_s": round(server_start_s, 2),
        "connect": {
            "all_connected_s": round(connect_all_s, 3),
            "connected": sum(1 for s in subs if s["status"] == 200 and not np.isnan(s["subscribed_s"])),
            "sse_clients_gauge_at_go": srv.get("sse_clients_at_go"),
            "headers_ms": spread(connect),
            "first_bytes_ms": spread(first),
        },
        "deliveries": int(seq.size),
        "deliveries_expected": plan.subscribers * (plan.events + 1),
        "delivered_events_per_s": round(seq.size / span, 1) if span == span and span > 0 else None,
        "delivery_span_s": round(span, 3),
        "latency_ms": spread(latency),
        "latency_last_subscriber_ms": spread(per_event_last),
        "latency_from_schedule_ms": spread(recv - due),
        "publisher_late_ms": spread(publisher_late),
        "goal_p99_ms": GOAL_P99_MS,
        "goal_met": bool(p99 == p99 and p99 <= GOAL_P99_MS and not totals["subscribers_failed"]),
        "server": {
            "rss_idle_mib": round(srv.get("rss_idle_mib", float("nan")), 1),
            "rss_connected_mib": round(srv.get("rss_connected_mib", float("nan")), 1),
            "rss_peak_mib": srv.get("rss_peak_mib"),
            "rss_per_subscriber_kib": round(
                (srv.get("rss_connected_mib", 0.0) - srv.get("rss_idle_mib", 0.0)) * 1024 / plan.subscribers,
                1,
            ),
            "stream_cpu_s": srv.get("cpu_s"),
            "stream_wall_s": srv.get("drained_s"),
            "publish_s": srv.get("publish_s"),
            "cpu_share": round(srv["cpu_s"] / srv["drained_s"], 3) if srv.get("drained_s") else None,
            "sched_run_s": srv.get("sched_run_s"),
            "sched_wait_s": srv.get("sched_wait_s"),
            "sse_clients_left": srv.get("sse_clients_left"),
            "streams_cancelled_at_shutdown": srv.get("streams_cancelled_at_shutdown"),
        },
        "clients": {
            "cpu_s": [round(r["cpu_s"], 2) for r in sorted(results, key=lambda r: r["index"])],
            "rss_mib": [round(r["rss_mib"], 1) for r in sorted(results, key=lambda r: r["index"])],
            "sched_wait_s": [round(r["sched_wait_s"], 2) for r in sorted(results, key=lambda r: r["index"])],
            "loop_lag_ms": spread(lag),
        },
        "failures": totals,
        "client_errors": dict(errors),
    }


def print_table(s: dict[str, Any]) -> None:
    def pcts(d: dict[str, float]) -> str:
        return f"p50 {d['p50']:8.2f}  p95 {d['p95']:8.2f}  p99 {d['p99']:8.2f}  max {d['max']:8.2f}"

    c, srv, f = s["connect"], s["server"], s["failures"]
    pin = ", pinned: server cpu 0" if s["pinned"] else ""
    rows = [
        ("setup", f"{s['subscribers']} subscribers in {s['client_procs']} client procs (uvloop), server loop "
                  f"{s['server_loop']}, {s['cpus']} cpus{pin}, fd limit {s['fd_limit']}"),
        ("stream", f"{s['events']} events ({s['rate']:g}/s for {s['seconds']:g} s, then call.ended), "
                   f"JSON {s['event_json_bytes']['mean']:.0f} B mean ({s['event_json_bytes']['min']}-"
                   f"{s['event_json_bytes']['max']}), history {s['history']}"),
        ("server start", f"{s['server_start_s']:.2f} s"),
        ("connect all", f"{c['connected']}/{s['subscribers']} in {c['all_connected_s']:.2f} s; server gauge at go: "
                        f"{c['sse_clients_gauge_at_go']:.0f}"),
        ("  headers ms", pcts(c["headers_ms"])),
        ("  first bytes ms", pcts(c["first_bytes_ms"])),
        ("deliveries", f"{s['deliveries']}/{s['deliveries_expected']}, {s['delivered_events_per_s']} events/s "
                       f"over {s['delivery_span_s']:.2f} s"),
        ("latency ms", pcts(s["latency_ms"]) + f"   (goal p99 <= {s['goal_p99_ms']:g}: "
                       f"{'met' if s['goal_met'] else 'NOT met'})"),
        ("  last subscriber", pcts(s["latency_last_subscriber_ms"])),
        ("  from schedule", pcts(s["latency_from_schedule_ms"])),
        ("  publisher late", pcts(s["publisher_late_ms"])),
        ("server RSS MiB", f"idle {srv['rss_idle_mib']:.1f}, connected {srv['rss_connected_mib']:.1f} "
                           f"({srv['rss_per_subscriber_kib']:.1f} KiB/subscriber), peak {srv['rss_peak_mib']:.1f}"),
        ("server CPU", f"{srv['stream_cpu_s']:.2f} s over {srv['stream_wall_s']:.2f} s of stream "
                       f"({srv['cpu_share'] * 100:.0f}% of a core); loop thread waited {srv['sched_wait_s']:.2f} s "
                       f"for a CPU while runnable"),
        ("clients", f"CPU s {s['clients']['cpu_s']}, waited for a CPU s {s['clients']['sched_wait_s']}, "
                    f"RSS MiB {s['clients']['rss_mib']}"),
        ("  loop lag ms", pcts(s["clients"]["loop_lag_ms"])),
        ("failures", f"{f['subscribers_failed']} subscribers: connect {f['connect_failed']}, cut short "
                     f"{f['cut_short']}, missing {f['missing']}, duplicated {f['duplicated']}, out of order "
                     f"{f['out_of_order']}, unexpected {f['unexpected']}, error msgs {f['error_messages']}, "
                     f"corrupt {f['corrupt']}"),
    ]  # fmt: skip
    if s["client_errors"]:
        rows.append(("  client errors", ", ".join(f"{k} x{v}" for k, v in s["client_errors"].items())))
    if s["deliveries"] < s["deliveries_expected"]:
        rows.append(("  note", "latencies cover only the events delivered; the rest never arrived"))
    if srv["streams_cancelled_at_shutdown"]:
        rows.append(
            (
                "  server",
                f"{srv['streams_cancelled_at_shutdown']} streams still open at shutdown, "
                f"cancelled by uvicorn",
            )
        )
    load = s["loadavg_1min"]
    rows.append(
        (
            "wall",
            f"{s['wall_s']:.1f} s; load average (1 min) {load['before']:.2f} before, "
            f"{load['after']:.2f} after, on {s['cpus']} cpus",
        )
    )
    for name, value in rows:
        print(f"{name:18} {value}")


if __name__ == "__main__":
    sys.exit(main())
