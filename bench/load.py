"""Load bench: N calls live, in real time, at once, on a cluster of real nodes (or one process).

    .venv/bin/python bench/load.py [--calls 1,2,4,6] [--seconds 60] [--stagger 1.0]
        [--single [--repo PATH] [--text]] [--recording WAV ...] [--timeout 1800] [--json OUT.json]

What runs, all on loopback (127.0.0.1):

- The cluster (default), as ``docker-compose.yml`` lays it out: a Redis of its own (``redis-server``
  on a free port, nothing kept on disk), one API node (``assist serve --role api``) and two media
  workers (``--role media``), processes of their own on one Redis key prefix, with the English
  default models, the shipped rule pack, the sample knowledge base, fresh data directories and
  bench tokens. It starts once; the rounds run one after the other on it.
- The calls, in the cluster: for each N of ``--calls``, N calls through the L16 WebSocket tap
  (``/v1/taps/l16``, 16 kHz stereo, agent left, customer right), as a telephony platform streams
  them: 20 ms frames at real-time pace, call i to media worker i mod 2 (the integrator's load
  balancer), ``--stagger`` seconds apart, cycling over the English recordings (the demo's
  Kokoro-rendered calls), each cut to its first ``--seconds``; the socket closes normally at the
  end (``call.ended``, reason ``completed``).
- ``--single``: one ``assist serve`` (``--role all``, the code of ``--repo``, default this
  checkout, so a clean worktree of an older commit can be measured with the same bench) plays the
  recordings itself, started through the REST API (``POST /v1/calls``, ``realtime: true``: the
  live pipeline with a real-time clock, VAD, ASR, the call's coach and knowledge, as the demo
  plays them). ``--text`` (single only): the demo's English calls as timed transcripts instead
  (``.jsonl`` recordings, each final published at its turn's end): no ASR, so what lags is the
  transcript path and the coach.
- The followers: one thread per call reads the call's SSE stream (``GET /v1/calls/{id}/events``)
  from the API node (the single server) from right after the call started until ``call.ended``.

Measured per round:

- final lag: when a non-empty ``transcript.final`` was read from the stream (the client's wall
  clock) minus when its words ended (the call's origin plus the final's ``t_end``; the origin is
  when the tap client began sending the call's audio, or for a recording the server plays,
  ``call.started``'s ``emitted_at``): p50, p95, max over every final of every call of the round;
- alert lag: the same for ``alert`` events (their ``t_end``: the evidence's end, or the end of the
  turn that missed a step);
- events lost (gaps in a call's SSE ids; must be 0), audio frames dropped (``call.ended`` stats),
  the coach queue's longest wait over the round's calls (``coach_wait_ms_max`` where the server
  reports it);
- partials per call (both channels) and partials skipped per call because the call was behind
  (``call.ended`` stats);
- CPU: the server processes' CPU seconds (user + system, their threads; in the cluster the API
  node, both workers and Redis) over the round's wall time, in cores and per call; the machine's
  1-minute load average at the round's end (other work on a shared machine shows there).

Bounded in time: every round waits at most its calls' length plus 180 s, the whole run at most
``--timeout`` seconds; the servers are stopped at the end (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "bench-load-supervisor-token"
TAP_TOKEN = "bench-load-integrator-token"  # what the telephony platform's tap connects with
FRAME_S = 0.02  # the tap's frames: 20 ms of 16 kHz stereo, as a media server forks them
RENDERS = Path.home() / ".cache" / "agent-assist" / "demo-renders"
DEFAULT_RECORDINGS = ("en-tele-05.wav", "en-bank-02.wav", "en-shop-04.wav")
CHANNELS = ("agent", "customer")


@dataclass
class Follow:
    """One call's stream as the client read it."""

    call_id: str
    origin: float | None = None  # call time 0 on the wall clock
    audio_origin: float | None = None  # a tap's call: call time 0 as the client sent it (wall clock)
    final_lags: list[float] = field(default_factory=list)
    alert_lags: list[float] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    ended: bool = False
    error: str = ""


@dataclass
class Round:
    calls: int
    finals: int
    final_p50_s: float
    final_p95_s: float
    final_max_s: float
    alerts: int
    alert_p50_s: float
    alert_p95_s: float
    events_lost: int
    frames_dropped: float
    coach_wait_max_ms: float
    cpu_cores: float
    cpu_per_call: float
    wall_s: float
    load1: float
    unfinished: int
    partials: float  # per call (both channels), from call.ended's stats
    skipped: float  # partials skipped per call because the call was behind
    cores_by_process: list[float] = field(default_factory=list)  # in the order of the processes started


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else float("nan")


def find_recordings(names: list[str]) -> list[Path]:
    """The named WAVs: a path as given, else the demo's directory, else the demo render cache."""
    out = []
    for name in names:
        for candidate in (Path(name), ROOT / "samples" / "demo" / name, RENDERS / name):
            if candidate.is_file():
                out.append(candidate)
                break
        else:
            print(f"load: recording {name} not found (samples/demo/ or {RENDERS}); skipped", file=sys.stderr)
    if not out:
        raise SystemExit("load: no recordings to play")
    return out


def cut(src: Path, dst: Path, seconds: float) -> float:
    """``src``'s first ``seconds`` as a 16 kHz stereo PCM WAV (agent left, customer right)."""
    from sidecar.audio import PIPELINE_RATE
    from sidecar.callfile import AudioCall, load_call

    call = load_call(src, "customer")
    assert isinstance(call, AudioCall), src
    n = min(int(seconds * PIPELINE_RATE), max(p.size for p in call.channels.values()))
    pair = np.zeros((n, 2), dtype=np.int16)
    for i, ch in enumerate(("agent", "customer")):
        pcm = call.channels.get(ch)  # type: ignore[call-overload]
        if pcm is not None:
            pair[: min(n, pcm.size), i] = pcm[:n]
    with wave.open(str(dst), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(PIPELINE_RATE)
        w.writeframes(pair.tobytes())
    return n / PIPELINE_RATE


def transcripts(dst: Path, seconds: float) -> list[tuple[str, float]]:
    """``--text``: the demo's English calls (``samples/demo/calls.json``) as timed transcripts
    (2.6 words a second, 0.8 s between turns), cut at ``seconds``: no ASR, so the lag is the
    coach's and the transcript path's alone."""
    calls = json.loads((ROOT / "samples" / "demo" / "calls.json").read_text(encoding="utf-8"))["calls"]
    out = []
    for call in calls:
        if call.get("lang") != "en":
            continue
        t, lines = 0.5, []
        for turn in call["turns"]:
            if turn["speaker"] not in ("agent", "customer") or not turn.get("text"):
                continue
            end = t + max(1.0, len(turn["text"].split()) / 2.6)
            if end > seconds:
                break
            lines.append(json.dumps({"channel": turn["speaker"], "text": turn["text"], "start_s": round(t, 2),
                                     "end_s": round(end, 2)}))  # fmt: skip
            t = end + 0.8
        name = f"{call['id']}.jsonl"
        (dst / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        out.append((name, t))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    base: str
    proc: subprocess.Popen[bytes]


def start_server(
    repo: Path,
    work: Path,
    port: int,
    name: str = "server",
    role: str = "all",
    env_extra: dict[str, str] | None = None,
    cpus: set[int] | None = None,
) -> Node:
    """``cpus``: the cores the process may run on (``None``: any), as a pod's CPU share."""
    env = {
        **os.environ,
        "PYTHONPATH": str(repo),
        "HF_HUB_OFFLINE": "1",
        "ASSIST_DATA": str(work / f"{name}-data"),
        "ASSIST_RECORDINGS": str(work / "recordings"),
        "ASSIST_TOKENS": f"{TOKEN}:supervisor:bench,{TAP_TOKEN}:integrator:bench-tap",
        "ASSIST_MAX_CALLS_PER_USER": "1000",
        **(env_extra or {}),
    }
    log = (work / f"{name}.log").open("wb")
    code = "import sys; from sidecar.cli import main; sys.exit(main())"
    role_args = ["--role", role] if role != "all" else []  # an older checkout has no --role
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--host", "127.0.0.1", "--port", str(port), *role_args],
        cwd=repo,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus))
        if cpus
        else None,  # the affinity only (no threads yet)
    )
    return Node(name, f"http://127.0.0.1:{port}", proc)


def start_redis(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Redis of the bench's own on a free port (nothing kept on disk)."""
    if shutil.which("redis-server") is None:
        raise SystemExit(
            "load: redis-server not found: install it (apt-get install redis-server), or use --single"
        )
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(work), "--logfile", str(work / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return proc, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.1)
    raise SystemExit("load: redis-server did not answer within 10 s")


def start_cluster(
    repo: Path, work: Path, redis_url: str, workers: int = 2, pin: bool = True
) -> tuple[Node, list[Node]]:
    """One API node and ``workers`` media workers on ``redis_url`` (one key prefix of their own).
    ``pin``: the machine's cores are shared out among the workers (each on its own core(s), as
    pods with CPU requests are), so their thread pools size themselves to their share instead of
    all of them oversubscribing every core; the API node and Redis float."""
    shared = {"REDIS_URL": redis_url, "ASSIST_REDIS_PREFIX": f"bench-load-{os.getpid()}"}
    api = start_server(repo, work, free_port(), "api", "api", shared)
    cores = sorted(os.sched_getaffinity(0))
    media = []
    for i in range(workers):
        share = {c for j, c in enumerate(cores) if j % workers == i % len(cores)} if pin else None
        env = {**shared, "ASSIST_NODE_ID": f"media-{i + 1}"}
        media.append(start_server(repo, work, free_port(), f"media-{i + 1}", "media", env, share))
    return api, media


def wait_healthy(node: Node, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if node.proc.poll() is not None:
            raise SystemExit(f"load: {node.name} exited ({node.proc.returncode}) before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{node.base}/healthz", timeout=2).json().get("status") == "ok":
                return
        time.sleep(1)
    raise SystemExit(f"load: {node.name} was not ready within {timeout_s:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stream_l16(base: str, wav: Path, meta: dict[str, Any], f: Follow) -> None:
    """One call through the L16 WebSocket tap, as a media server streams it: metadata, then 20 ms
    stereo frames at real-time pace (an absolute schedule: no drift), then a normal close."""
    from websockets.sync.client import connect

    with wave.open(str(wav), "rb") as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    step = int(rate * FRAME_S) * 4  # stereo, 16-bit
    url = base.replace("http://", "ws://") + "/v1/taps/l16"
    try:
        with connect(url, additional_headers={"Authorization": f"Bearer {TAP_TOKEN}"}, open_timeout=30) as ws:
            ws.send(json.dumps({**meta, "sampleRate": rate, "mixType": "stereo", "channels": list(CHANNELS)}))
            t0 = time.monotonic()
            # call time 0: a media server sends each frame once it is captured, so the first
            # frame's audio began one frame before it was sent
            f.audio_origin = time.time() - FRAME_S
            for i, start in enumerate(range(0, len(pcm), step)):
                delay = t0 + i * FRAME_S - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                ws.send(pcm[start : start + step])
    except Exception as exc:  # the round reports it with the call
        f.error = f"tap: {type(exc).__name__}: {exc}"


def follow(base: str, f: Follow, deadline: float) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    timeout = httpx.Timeout(30.0, read=max(30.0, deadline - time.monotonic()))
    url = f"{base}/v1/calls/{f.call_id}/events"
    try:
        for _ in range(100):  # the call board may not have the call yet (it follows the bus)
            with httpx.stream("GET", url, headers=headers, timeout=timeout) as r:
                if r.status_code == 404:
                    time.sleep(0.1)
                    continue
                r.raise_for_status()
                read_stream(r, f, deadline)
                return
    except (httpx.HTTPError, ValueError) as exc:
        f.error = f"{type(exc).__name__}: {exc}"


def read_stream(r: httpx.Response, f: Follow, deadline: float) -> None:
    data = ""
    for line in r.iter_lines():
        if line.startswith("data: "):
            data = line[6:]
            continue
        if line or not data:
            continue
        now = time.time()
        event: dict[str, Any] = json.loads(data)
        data = ""
        on_event(f, event, now)
        if f.ended or time.monotonic() > deadline:
            return


def on_event(f: Follow, event: dict[str, Any], now: float) -> None:
    kind, payload = event.get("type"), event.get("payload") or {}
    if isinstance(event.get("seq"), int):
        f.seqs.append(event["seq"])
    if kind == "call.started":
        f.origin = float(event["emitted_at"])
    elif f.origin is None:
        return
    elif kind == "transcript.final" and payload.get("text"):
        f.final_lags.append(now - ((f.audio_origin or f.origin) + float(event["t_end"])))
    elif kind == "alert":
        f.alert_lags.append(now - ((f.audio_origin or f.origin) + float(event["t_end"])))
    elif kind == "call.ended":
        f.stats = {k: float(v) for k, v in (payload.get("stats") or {}).items()}
        f.ended = True


def lost(seqs: list[int]) -> int:
    """Events missing from a stream that should hold seq 1..last."""
    return (max(seqs) - len(set(seqs))) if seqs else 0


def run_round(
    base: str,
    pids: list[int],
    n: int,
    recordings: list[Path],
    length_s: float,
    stagger_s: float,
    taps: list[str] | None = None,
) -> Round:
    """``taps``: the media workers' bases (calls stream through the L16 tap, round robin);
    None: the server at ``base`` plays the recordings itself."""
    load_started = time.monotonic()
    cpu0, wall0 = {pid: cpu_s(pid) for pid in pids}, time.monotonic()
    deadline = time.monotonic() + length_s + stagger_s * n + 180.0
    follows, threads = [], []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as c:
        for i in range(n):
            call_id = f"load-{n}-{i}-{int(load_started)}"
            recording = recordings[i % len(recordings)]
            f = Follow(call_id)
            meta = {"lang": "en", "agent_id": f"bench-agent-{i}", "queue": "bench", "call_id": call_id}
            if taps:
                tap = threading.Thread(
                    target=stream_l16, args=(taps[i % len(taps)], recording, meta, f), daemon=True
                )
                tap.start()
                threads.append(tap)
            else:
                r = c.post("/v1/calls", json={**meta, "recording": recording.name, "realtime": True})
                if r.status_code != 201:
                    raise SystemExit(f"load: POST /v1/calls answered {r.status_code}: {r.text[:200]}")
            t = threading.Thread(target=follow, args=(base, f, deadline), daemon=True)
            t.start()
            follows.append(f)
            threads.append(t)
            if i < n - 1:
                time.sleep(stagger_s)
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 5)
    wall = time.monotonic() - wall0
    by_pid = {pid: cpu_s(pid) - before for pid, before in cpu0.items()}  # CPU seconds each
    cpu = sum(by_pid.values())
    finals = [x for f in follows for x in f.final_lags]
    alerts = [x for f in follows for x in f.alert_lags]
    for f in follows:
        if f.error:
            print(f"load: call {f.call_id}: {f.error}", file=sys.stderr)
    return Round(
        calls=n,
        finals=len(finals),
        final_p50_s=pct(finals, 50),
        final_p95_s=pct(finals, 95),
        final_max_s=round(max(finals), 2) if finals else float("nan"),
        alerts=len(alerts),
        alert_p50_s=pct(alerts, 50),
        alert_p95_s=pct(alerts, 95),
        events_lost=sum(lost(f.seqs) for f in follows),
        frames_dropped=sum(f.stats.get("frames_dropped", 0.0) for f in follows),
        coach_wait_max_ms=max((f.stats.get("coach_wait_ms_max", float("nan")) for f in follows), default=0.0),
        cpu_cores=round(cpu / wall, 2),
        cpu_per_call=round(cpu / wall / n, 2),
        wall_s=round(wall, 1),
        load1=round(os.getloadavg()[0], 2),
        unfinished=sum(not f.ended for f in follows),
        partials=round(_per_call(follows, "_partials"), 1),
        skipped=round(_per_call(follows, "_skipped_partials"), 1),
        cores_by_process=[round(seconds / wall, 2) for seconds in by_pid.values()],
    )


def _per_call(follows: list[Follow], suffix: str) -> float:
    """A per-channel count of call.ended's stats (``agent_partials``, ...), both channels, per call."""
    totals = [sum(f.stats.get(f"{ch}{suffix}", 0.0) for ch in CHANNELS) for f in follows]
    return float(np.mean(totals)) if totals else float("nan")


HEADER = (
    f"{'N':>3} {'finals':>6} {'p50 s':>6} {'p95 s':>6} {'max s':>6} {'alerts':>6} {'al p50':>6} {'al p95':>6} "
    f"{'lost':>4} {'drops':>6} {'coachq ms':>9} {'cores':>5} {'/call':>5} {'load1':>5} {'unfin':>5} "
    f"{'part':>5} {'skip':>5}"
)


def line(r: Round) -> str:
    return (
        f"{r.calls:>3} {r.finals:>6} {r.final_p50_s:>6.2f} {r.final_p95_s:>6.2f} {r.final_max_s:>6.2f} "
        f"{r.alerts:>6} {r.alert_p50_s:>6.2f} {r.alert_p95_s:>6.2f} {r.events_lost:>4} {r.frames_dropped:>6.0f} "
        f"{r.coach_wait_max_ms:>9.0f} {r.cpu_cores:>5.2f} {r.cpu_per_call:>5.2f} {r.load1:>5.2f} {r.unfinished:>5} "
        f"{r.partials:>5.1f} {r.skipped:>5.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", default="1,2,4,6", help="N per round, comma-separated (default 1,2,4,6)")
    p.add_argument("--seconds", type=float, default=60.0, help="each recording cut to this (default 60)")
    p.add_argument("--stagger", type=float, default=1.0, help="seconds between a round's call starts")
    p.add_argument(
        "--single", action="store_true", help="one `assist serve` playing the recordings, no cluster"
    )
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="cluster: let every media worker run on every core (default: the cores shared out)")  # fmt: skip
    p.add_argument("--repo", type=Path, default=ROOT, help="the checkout whose `assist serve` runs")
    p.add_argument("--recording", action="append", default=None, help="an English WAV (repeatable)")
    p.add_argument(
        "--text", action="store_true", help="--single: timed transcripts instead of audio (no ASR)"
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="the whole run's limit, seconds")
    p.add_argument("--json", type=Path, default=None, help="write the rounds here too")
    args = p.parse_args(argv)
    if args.text and not args.single:
        p.error("--text plays transcripts inside one server: use it with --single")
    rounds_n = [int(x) for x in args.calls.split(",") if x.strip()]
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="assist-load-"))
    (work / "recordings").mkdir()
    paths: list[Path] = []
    lengths = []
    if args.text:
        for name, length in transcripts(work / "recordings", args.seconds):
            paths.append(work / "recordings" / name)
            lengths.append(length)
    else:
        for src in find_recordings(args.recording or list(DEFAULT_RECORDINGS)):
            lengths.append(cut(src, work / "recordings" / src.name, args.seconds))
            paths.append(work / "recordings" / src.name)
    length_s = max(lengths)
    repo = args.repo.resolve()
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    shape = (
        "one server" if args.single else "Redis, one API node, two media workers; calls through the L16 tap"
    )
    print(f"load: serving {repo} ({commit}): {shape}; recordings {', '.join(x.name for x in paths)} cut to "
          f"{length_s:.0f} s; {os.cpu_count()} cores; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    rounds: list[Round] = []
    try:
        taps: list[str] | None = None
        if args.single:
            api = start_server(repo, work, free_port())
            nodes = [api]
        else:
            redis, redis_url = start_redis(work)
            procs.append(redis)
            api, media = start_cluster(repo, work, redis_url, pin=args.pin)
            nodes = [api, *media]
            taps = [m.base for m in media]
        procs.extend(n.proc for n in nodes)
        for node in nodes:
            wait_healthy(node, 600.0)
        print(f"load: ready in {time.monotonic() - started:.0f} s")
        print(HEADER, flush=True)
        pids = [proc.pid for proc in procs]
        names = (["redis"] if not args.single else []) + [node.name for node in nodes]
        for n in rounds_n:
            if time.monotonic() - started + length_s + 180 > args.timeout:
                print(f"load: no time left for N={n} within --timeout {args.timeout:.0f} s")
                break
            r = run_round(api.base, pids, n, paths, length_s, args.stagger, taps)
            rounds.append(r)
            print(line(r), flush=True)
            if len(names) > 1:
                shares = ", ".join(
                    f"{name} {c:.2f}" for name, c in zip(names, r.cores_by_process, strict=True)
                )
                print(f"    cores by process: {shares}", flush=True)
    finally:
        for proc in reversed(procs):  # the nodes, then Redis
            stop(proc)
        if any(proc.returncode not in (0, -signal.SIGTERM) for proc in procs):
            print(f"load: logs in {work}", file=sys.stderr)
    ok = [r.calls for r in rounds if r.final_p95_s <= 1.5 and r.unfinished == 0 and r.events_lost == 0]
    print(f"load: largest N with final lag p95 <= 1.5 s: {max(ok) if ok else 'none'}")
    if args.json is not None:
        meta = {"repo": str(repo), "commit": commit, "seconds": length_s, "recordings": [x.name for x in paths],
                "shape": "single" if args.single else "cluster"}  # fmt: skip
        args.json.write_text(json.dumps({**meta, "rounds": [asdict(r) for r in rounds]}, indent=1))
    if all(r.unfinished == 0 for r in rounds):
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
