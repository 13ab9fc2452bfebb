"""Issue 13 (hardening) against a real ``assist serve`` on 127.0.0.1: a catastrophic rule regex,
tokens in logs, request limits before parsing and auth, feedback ownership, per-user call caps,
framing headers, rule file names.

The service here is light (no embedders, no knowledge index: none of this needs them) with its own
small rule pack, recordings and one token per role, so publishing rules does not touch the shared
test service. Every log record made while this module runs, by any logger, is captured.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from coach.engine import Coach
from knowledge.feedback import FeedbackLog
from knowledge.store import SnippetStore
from sidecar.kernel.bus import InMemoryBus
from sidecar.service import limits
from sidecar.service.app import create_app, framing_headers
from sidecar.service.auth import Principal, TokenEntry, TokenTable, demo_tokens
from sidecar.service.config import ServiceConfig, Services
from sidecar.service.logs import JsonFormatter, scrub
from sidecar.service.serve import _print_urls, make_server
from tests.service_helpers import TOKENS, free_port

UNKNOWN_TOKEN = "not-a-known-token-7f3a9c"
HEALTHZ_BUDGET_S = 0.1  # the requirement

PACK = """\
pack: hardening
version: 1
lang: en
rules:
  - id: t.insult
    category: abuse
    message: Do not insult the customer.
    match:
      phrases: [you idiot]
"""
CATASTROPHIC_RULES = """\
pack: hardening
version: 1
lang: en
rules:
  - id: t.catastrophic
    category: unprofessional
    message: The line was all a's.
    match:
      regex: ['(a+)+$', '(a|aa)+$', '(\\w+\\s?)+$', '(.*a){12}x']
"""


def transcript(lines: list[tuple[str, str]], step_s: float) -> str:
    out = []
    for i, (channel, text) in enumerate(lines):
        out.append(json.dumps({"channel": channel, "text": text, "start_s": 0.1 + i * step_s,
                               "end_s": 0.1 + i * step_s + step_s * 0.8}))  # fmt: skip
    return "\n".join(out) + "\n"


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self.guard:
            self.records.append(record)


@dataclass
class Hardened:
    base: str
    server: uvicorn.Server
    capture: Capture
    rules_dir: Path
    recordings: Path

    def client(self, role: str | None = None, timeout: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {TOKENS[role][0]}"} if role else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=timeout)

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def start_call(self, recording: str, *, role: str = "supervisor", agent: str = "alice",
                   realtime: bool = False) -> httpx.Response:  # fmt: skip
        with self.client(role) as c:
            return c.post("/v1/calls", json={"recording": recording, "realtime": realtime, "agent_id": agent})

    def wait_ended(self, call_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self.client("supervisor") as c:
            while time.monotonic() < deadline:
                detail: dict[str, Any] = c.get(f"/v1/calls/{call_id}").json()
                if detail["ended"]:
                    return detail
                time.sleep(0.1)
        raise AssertionError(f"call {call_id} did not end within {timeout_s} s")


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hardened]:
    root = tmp_path_factory.mktemp("hardened")
    rules = root / "rules"
    rules.mkdir()
    (rules / "base.yaml").write_text(PACK, encoding="utf-8")
    recordings = root / "recordings"
    recordings.mkdir()
    forty = "a" * 40
    (recordings / "aaaa.jsonl").write_text(
        transcript([("agent", f"{forty} b")] * 40 + [("agent", "aaaa")], 0.1), encoding="utf-8"
    )
    (recordings / "short.jsonl").write_text(
        transcript([("agent", "Hello, how can I help?"), ("customer", "Where is my refund?")], 0.3),
        encoding="utf-8",
    )
    (recordings / "slow.jsonl").write_text(
        transcript([("agent", "One moment please."), ("customer", "Sure.")] * 3, 1.0), encoding="utf-8"
    )
    tokens = TokenTable([TokenEntry(tok, Principal(name, "agent" if role == "agent2" else role))  # type: ignore[arg-type]
                         for role, (tok, name) in TOKENS.items()])  # fmt: skip
    config = ServiceConfig(data_dir=root / "data", recordings_dir=recordings, kb_seed=None, tokens=tokens,
                           knowledge=False, preload_lang=None, rules_dir=rules, max_calls_per_user=2)  # fmt: skip
    config.data_dir.mkdir()
    store = SnippetStore(root / "kb.sqlite3")
    services = Services(config=config, bus=InMemoryBus(), tokens=tokens, store=store,
                        feedback=FeedbackLog(store), coach=Coach(rules, embedder=None), knowledge=None,
                        policy=None)  # fmt: skip
    capture = Capture()
    root_logger = logging.getLogger()
    watched = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "websockets", "aiortc", "assist")]
    saved = (root_logger.level, [lg.level for lg in watched])
    root_logger.addHandler(capture)
    root_logger.setLevel(logging.DEBUG)
    for lg in watched:
        lg.setLevel(logging.DEBUG)
    port = free_port()
    server = make_server(create_app(config, services), "127.0.0.1", port)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name="hardened", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the hardening test service did not start")
        time.sleep(0.05)
    try:
        yield Hardened(f"http://127.0.0.1:{port}", server, capture, rules, recordings)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        root_logger.removeHandler(capture)
        root_logger.setLevel(saved[0])
        for lg, level in zip(watched, saved[1], strict=True):
            lg.setLevel(level)


def healthz_times(base: str, until: Any, max_s: float = 60.0) -> list[float]:
    """/healthz round trips (a fresh connection each, as a load balancer probes) until ``until()``."""
    times: list[float] = []
    deadline = time.monotonic() + max_s
    with httpx.Client(base_url=base, timeout=30) as c:
        while time.monotonic() < deadline and not until():
            start = time.perf_counter()
            assert c.get("/healthz", headers={"Connection": "close"}).status_code == 200
            times.append(time.perf_counter() - start)
            time.sleep(0.02)
    return times


def assert_responsive(times: list[float], what: str) -> None:
    assert len(times) >= 3, f"too few /healthz probes while {what}"
    median = statistics.median(times)
    assert median < HEALTHZ_BUDGET_S, f"/healthz median {median * 1000:.0f} ms while {what}: {times}"
    assert max(times) < 1.0, f"/healthz stalled {max(times):.2f} s while {what}"


# -- 1. a rule regex can never stall the process ---------------------------------------------------


def test_a_catastrophic_rule_regex_does_not_stall_the_service(hardened: Hardened) -> None:
    with hardened.client("knowledge_manager") as km:
        r = km.post("/v1/rules/publish", json={"files": {"catastrophic.yaml": CATASTROPHIC_RULES}})
        assert r.status_code == 200, r.text
    try:
        r = hardened.start_call("aaaa.jsonl", realtime=True)  # 40 lines of 40 a's and " b" over 4 s
        assert r.status_code == 201, r.text
        call_id = r.json()["call_id"]
        ended = threading.Event()

        def watch() -> None:
            hardened.wait_ended(call_id, timeout_s=120)
            ended.set()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        times = healthz_times(hardened.base, ended.is_set, max_s=120)
        watcher.join(timeout=5)
        assert ended.is_set(), "the call with the catastrophic lines did not end"
        assert_responsive(times, "40-character lines were matched against (a+)+$")
        with hardened.client("supervisor") as c:
            detail = c.get(f"/v1/calls/{call_id}").json()
        fired = [a for a in detail["alerts"] if a["rule_id"] == "t.catastrophic"]
        assert fired, "the rule never matched the last line ('aaaa'): it was not live"
    finally:
        with hardened.client("knowledge_manager") as km:
            assert (
                km.post("/v1/rules/publish", json={"files": {"catastrophic.yaml": None}}).status_code == 200
            )


def test_a_regex_re2_cannot_run_is_refused_at_publish(hardened: Hardened) -> None:
    bad = CATASTROPHIC_RULES.replace(
        "['(a+)+$', '(a|aa)+$', '(\\w+\\s?)+$', '(.*a){12}x']", "['(?<!can )i see']"
    )
    with hardened.client("knowledge_manager") as km:
        r = km.post("/v1/rules/validate", json={"files": {"bad.yaml": bad}})
        assert r.status_code == 200
        assert not r.json()["ok"]
        (problem,) = r.json()["problems"]
        assert problem["file"] == "bad.yaml"
        assert "lookbehind" in problem["message"]
        assert km.post("/v1/rules/publish", json={"files": {"bad.yaml": bad}}).status_code == 422


# -- 2. no token in any log line -------------------------------------------------------------------


async def _open_taps(hardened: Hardened) -> None:
    ws = hardened.base.replace("http://", "ws://")
    for role in ("integrator", "admin"):
        url = f"{ws}/v1/taps/l16?access_token={TOKENS[role][0]}"
        async with connect(url, proxy=None, compression=None, open_timeout=30) as conn:
            await conn.send(b"\x00\x00" * 160)  # audio before the metadata: the tap closes it
            with contextlib.suppress(ConnectionClosed):
                for _ in range(10):
                    await asyncio.wait_for(conn.recv(), 30)
            assert conn.close_code is not None
    for token in (TOKENS["agent"][0], UNKNOWN_TOKEN):  # refused upgrades: 403
        for tap in ("l16", "twilio"):
            with pytest.raises(InvalidStatus):
                async with connect(f"{ws}/v1/taps/{tap}?access_token={token}", proxy=None, open_timeout=30):
                    pass
    url = f"{ws}/v1/taps/twilio?access_token={TOKENS['integrator'][0]}"
    async with connect(url, proxy=None, compression=None, open_timeout=30) as conn:
        await conn.close()


def test_no_token_reaches_any_log_line(hardened: Hardened) -> None:
    asyncio.run(_open_taps(hardened))
    r = hardened.start_call("short.jsonl")
    call_id = r.json()["call_id"]
    hardened.wait_ended(call_id)
    with httpx.Client(base_url=hardened.base, timeout=30) as c:  # tokens in query strings and headers
        for role in ("supervisor", "agent", "admin"):
            token = TOKENS[role][0]
            with c.stream("GET", f"/v1/calls/{call_id}/events?access_token={token}&after=0") as resp:
                assert resp.status_code == 200
                for line in resp.iter_lines():
                    if "call.ended" in line:
                        break
            c.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        c.get(f"/v1/me?access_token={UNKNOWN_TOKEN}")
        c.get("/v1/me", headers={"Authorization": f"Bearer {UNKNOWN_TOKEN}"})
        c.post(f"/v1/kb/feedback?access_token={TOKENS['knowledge_manager'][0]}", json={})
    time.sleep(0.3)  # the server thread's last log lines
    secrets = [tok for tok, _ in TOKENS.values()] + [UNKNOWN_TOKEN]
    formatter = JsonFormatter()
    with hardened.capture.guard:
        records = list(hardened.capture.records)
    lines = []
    for record in records:
        text = " ".join(
            [formatter.format(record), record.getMessage(), repr(record.args), record.exc_text or ""]
        )
        lines.append(text)
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{record.name}: {text}"
    websocket_lines = [t for t in lines if "WebSocket /v1/taps/" in t]
    assert websocket_lines, "uvicorn logged no WebSocket line: the check above proved nothing"
    assert any("?[query removed]" in t for t in websocket_lines), websocket_lines[:3]


def test_scrub_removes_query_strings_tokens_and_credentials() -> None:
    assert scrub('127.0.0.1:5 - "WebSocket /v1/taps/l16?access_token=abc" [accepted]') == (
        '127.0.0.1:5 - "WebSocket /v1/taps/l16?[query removed]" [accepted]'
    )
    assert "s3cret" not in scrub("GET wss://host/v1/taps/twilio?x=1&access_token=s3cret")
    assert scrub("Authorization: Bearer abcdefgh") == "Authorization: Bearer [redacted]"
    assert scrub("> X-API-KEY: agent-alice-token") == "> X-API-KEY: [redacted]"  # websockets' debug lines
    assert scrub("< x-api-key: agent-alice-token") == "< x-api-key: [redacted]"
    assert (
        scrub('{"password": "hunter22", "token": "abc"}')
        == '{"password": "[redacted]", "token": "[redacted]"}'
    )
    assert scrub("is this ok? yes") == "is this ok? yes"


def test_tokens_are_printed_at_start_only_when_generated(capsys: pytest.CaptureFixture[str]) -> None:
    configured = TokenTable([TokenEntry(tok, Principal(name, "agent" if role == "agent2" else role))  # type: ignore[arg-type]
                             for role, (tok, name) in TOKENS.items()])  # fmt: skip
    _print_urls(SimpleNamespace(services=SimpleNamespace(tokens=configured)), "http://127.0.0.1:8000")  # type: ignore[arg-type]
    printed = capsys.readouterr().err
    assert "/ui/supervisor.html" in printed
    assert not [tok for tok, _ in TOKENS.values() if tok in printed], printed
    demo = demo_tokens()
    _print_urls(SimpleNamespace(services=SimpleNamespace(tokens=demo)), "http://127.0.0.1:8000")  # type: ignore[arg-type]
    printed = capsys.readouterr().err
    assert f"#token={demo.token_for('supervisor')}" in printed
    assert f"admin token         {demo.token_for('admin')}" in printed


# -- 3. request limits before parsing and before auth ----------------------------------------------


def raw_request(port: int, head: str, body: bytes = b"", timeout: float = 20.0) -> tuple[int, bytes, float]:
    """Send a request's head (and some body) over a socket; the status, the answer, and how long the
    server took to answer. The server must answer without the rest of the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        start = time.perf_counter()
        s.sendall(head.encode("latin-1") + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        elapsed = time.perf_counter() - start
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer, elapsed


def post_head(path: str, length: int, token: str | None = None, extra: str = "") -> str:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}"
            f"Content-Length: {length}\r\n{extra}\r\n")  # fmt: skip


def test_an_oversize_body_is_refused_from_its_headers_before_auth(hardened: Hardened) -> None:
    results: list[tuple[int, bytes, float]] = []

    def big(path: str) -> None:
        results.append(raw_request(hardened.port, post_head(path, 50 * 1024 * 1024)))

    threads = [threading.Thread(target=big, args=(p,)) for p in ("/v1/kb/feedback", "/v1/rules/validate",
                                                                 "/v1/kb/snippets/x/rollback")]  # fmt: skip
    for t in threads:
        t.start()
    times = healthz_times(hardened.base, lambda: all(not t.is_alive() for t in threads), max_s=30)
    for t in threads:
        t.join(timeout=30)
    assert sorted(status for status, _, _ in results) == [413, 413, 413], results
    assert all(elapsed < 5 for _, _, elapsed in results)  # answered without waiting for 50 MB
    if times:
        assert statistics.median(times) < HEALTHZ_BUDGET_S


def test_a_body_under_the_limit_without_a_token_is_refused_before_it_is_read(hardened: Hardened) -> None:
    # 20 MB declared (under the rules limit), nothing sent: a 401 comes back at once
    status, answer, elapsed = raw_request(hardened.port, post_head("/v1/rules/validate", 20 * 1024 * 1024))
    assert status == 401, answer
    assert elapsed < 5
    status, _, _ = raw_request(hardened.port, post_head("/v1/kb/feedback", 100, UNKNOWN_TOKEN))
    assert status == 401


def test_a_streamed_body_is_cut_off_at_the_limit(hardened: Hardened) -> None:
    """Chunked (no Content-Length): refused once the limit is passed, not after reading it all."""
    token = TOKENS["agent"][0]
    head = (f"POST /v1/kb/feedback HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    chunk = b"a" * 1024
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", hardened.port), timeout=20) as s:
        s.sendall(head.encode())
        s.settimeout(0.05)
        try:
            while sent < 20 * 1024 * 1024 and b"\r\n\r\n" not in answer:
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                with contextlib.suppress(TimeoutError):
                    answer += s.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(10)
        while b"\r\n\r\n" not in answer:
            more = s.recv(65536)
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 2 * 1024 * 1024, f"{sent} bytes sent before the 413"


def test_slow_headers_and_stalled_bodies_are_cut_off(
    hardened: Hardened, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "HEADER_TIMEOUT_S", 1.0)
    monkeypatch.setattr(limits, "BODY_IDLE_TIMEOUT_S", 1.0)
    slow = []
    for _ in range(5):  # headers that never end
        s = socket.create_connection(("127.0.0.1", hardened.port), timeout=20)
        s.sendall(b"POST /v1/kb/feedback HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        slow.append(s)
    slow.append(socket.create_connection(("127.0.0.1", hardened.port), timeout=20))  # sends nothing
    start = time.monotonic()
    times = healthz_times(hardened.base, lambda: time.monotonic() - start > 1.5, max_s=10)
    try:
        for s in slow:
            with contextlib.suppress(ConnectionResetError):
                assert s.recv(1024) == b""  # the server closed it
        assert time.monotonic() - start < 10
    finally:
        for s in slow:
            s.close()
    assert_responsive(times, "slow-header connections were held")
    # a body that stops half-way: 408, the connection freed
    head = post_head("/v1/kb/feedback", 100, TOKENS["agent"][0])
    status, answer, elapsed = raw_request(hardened.port, head, b'{"call_id": ')
    assert status == 408, answer
    assert elapsed < 10


def test_validation_errors_never_echo_the_input(hardened: Hardened) -> None:
    marker = "ECHO-ME-" + "x" * 30_000
    with hardened.client("knowledge_manager") as km:
        r = km.put("/v1/kb/snippets/echo", json={"title": "t", "body": marker, "lang": "en"})
        assert r.status_code == 422
        assert "ECHO-ME" not in r.text
        assert len(r.content) < 2_000
        assert r.json()["detail"][0]["loc"] == ["body", "body"]
    with hardened.client("agent") as agent:
        r = agent.post("/v1/kb/feedback", json={"call_id": "c", "snippet_id": "s", "kind": "ECHO-ME" * 500})
        assert r.status_code == 422
        assert "ECHO-ME" not in r.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/kb/feedback", '{"call_id": NaN, "snippet_id": "s", "kind": "used"}'),
        ("POST", "/v1/kb/feedback", '{"call_id": "c", "snippet_id": Infinity, "kind": "used"}'),
        ("POST", "/v1/kb/snippets/s/rollback", '{"version": -Infinity}'),
        ("POST", "/v1/kb/snippets/s/rollback", '{"version": 1e23}'),
        ("POST", "/v1/kb/snippets/s/rollback", '{"version": 99999999999999999999999}'),
        ("PUT", "/v1/kb/snippets/s", '{"title": "t", "body": "b", "lang": NaN}'),
        ("POST", "/v1/rules/validate", '{"files": {"a.yaml": NaN}}'),
        ("POST", "/v1/calls", '{"recording": "short.jsonl", "realtime": NaN}'),
    ],
)
def test_nan_infinity_and_huge_integers_are_422_not_500(hardened: Hardened, method: str, path: str,
                                                        body: str) -> None:  # fmt: skip
    with hardened.client("admin") as c:
        r = c.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text


def test_bounded_query_integers(hardened: Hardened) -> None:
    r = hardened.start_call("short.jsonl")
    call_id = r.json()["call_id"]
    hardened.wait_ended(call_id)
    with hardened.client("supervisor") as c:
        assert c.get(f"/v1/calls/{call_id}/events", params={"after": "1" + "0" * 30}).status_code == 422
        r = c.get(f"/v1/calls/{call_id}/events", headers={"Last-Event-ID": "9" * 40})
        assert r.status_code == 400
        with hardened.client("knowledge_manager") as km:
            assert km.get("/v1/kb/analytics", params={"since": "nan"}).status_code == 422
            assert km.get("/v1/kb/analytics", params={"since": "inf"}).status_code == 422


# -- 4. ownership, quotas, framing, names ---------------------------------------------------------


def test_feedback_only_on_calls_the_caller_may_see(hardened: Hardened) -> None:
    with hardened.client("knowledge_manager") as km:
        r = km.put("/v1/kb/snippets/fb-test", json={"title": "Refunds", "body": "Refunds take 5 days.",
                                                    "lang": "en", "status": "published"})  # fmt: skip
        assert r.status_code == 200, r.text
    r = hardened.start_call("short.jsonl", agent="alice")
    alice_call = r.json()["call_id"]
    hardened.wait_ended(alice_call)

    def feedback(role: str, call_id: str) -> int:
        with hardened.client(role) as c:
            body = {"call_id": call_id, "snippet_id": "fb-test", "kind": "used"}
            return c.post("/v1/kb/feedback", json=body).status_code

    assert feedback("agent", alice_call) == 204  # alice, on her own call
    assert feedback("agent2", alice_call) == 403  # bob, on alice's call
    assert feedback("agent", "no-such-call") == 404
    assert feedback("supervisor", alice_call) == 204  # a supervisor, on any call
    with hardened.client("knowledge_manager") as km:
        stats = {s["snippet_id"]: s for s in km.get("/v1/kb/analytics").json()}
    assert stats["fb-test"]["used"] == 2


def test_one_user_cannot_take_every_call_slot(hardened: Hardened) -> None:
    started = []
    for _ in range(2):  # this service lets one user run 2 recorded calls at once
        r = hardened.start_call("slow.jsonl", realtime=True)
        assert r.status_code == 201, r.text
        started.append(r.json()["call_id"])
    r = hardened.start_call("slow.jsonl", realtime=True)
    assert r.status_code == 429, r.text
    assert "2 recorded calls" in r.json()["detail"]
    r = hardened.start_call("slow.jsonl", role="admin", realtime=True)  # another user still can
    assert r.status_code == 201, r.text
    started.append(r.json()["call_id"])
    for call_id in started:
        hardened.wait_ended(call_id, timeout_s=90)
    r = hardened.start_call("short.jsonl")  # the user's slots are free again
    assert r.status_code == 201, r.text
    hardened.wait_ended(r.json()["call_id"])


def test_only_the_agent_widget_may_be_framed(hardened: Hardened) -> None:
    with httpx.Client(base_url=hardened.base, timeout=30) as c:
        for page in ("/ui/supervisor.html", "/ui/knowledge.html", "/ui/", "/docs", "/healthz"):
            r = c.get(page)
            assert r.headers.get("x-frame-options") == "DENY", page
            assert "frame-ancestors 'none'" in ", ".join(r.headers.get_list("content-security-policy")), page
        widget = c.get("/ui/agent.html")
        assert widget.status_code == 200
        assert "x-frame-options" not in widget.headers
        assert "frame-ancestors" not in ", ".join(widget.headers.get_list("content-security-policy"))


def test_the_widget_frame_allow_list_is_configurable() -> None:
    assert framing_headers("/ui/agent.html", None) == []
    assert framing_headers("/ui/agent.html", "https://softphone.example.com") == [
        (b"content-security-policy", b"frame-ancestors 'self' https://softphone.example.com")
    ]
    assert (b"x-frame-options", b"DENY") in framing_headers(
        "/ui/supervisor.html", "https://softphone.example.com"
    )


def test_a_rule_file_name_with_a_trailing_newline_is_refused(hardened: Hardened) -> None:
    with hardened.client("knowledge_manager") as km:
        for route in ("validate", "publish"):
            r = km.post(f"/v1/rules/{route}", json={"files": {"nl.yaml\n": PACK.replace("t.insult", "t.nl")}})
            assert r.status_code == 422, (route, r.text)
        files = [f["name"] for f in km.get("/v1/rules").json()["files"]]
    assert files == ["base.yaml"]
    assert not [p for p in hardened.rules_dir.iterdir() if "\n" in p.name]


# -- 5. snippet fields, recordings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("lang", "xx-evil"), ("lang", "en-evil"), ("lang", "xx"), ("title", "Refunds\x1b[31m"),
     ("title", "Refunds\u202egnp.exe"), ("title", "two\nlines"), ("body", "ok\x00"), ("tags", ["a\x07"]),
     ("triggers", ["x\u2066y"])],
)  # fmt: skip
def test_snippet_fields_are_validated(hardened: Hardened, field: str, value: Any) -> None:
    body = {
        "title": "Refunds",
        "body": "Step 1.\n\tStep 2.",
        "lang": "zh-TW",
        "tags": ["a"],
        "triggers": ["b"],
    }
    with hardened.client("knowledge_manager") as km:
        assert (
            km.put("/v1/kb/snippets/fields-ok", json=body).status_code == 200
        )  # newlines and tabs in a body
        r = km.put("/v1/kb/snippets/fields-bad", json={**body, field: value})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["field"] == field
        assert km.get("/v1/kb/snippets/fields-bad").status_code == 404


def test_recordings_do_not_follow_symbolic_links(hardened: Hardened, tmp_path: Path) -> None:
    outside = tmp_path / "secret.jsonl"
    outside.write_text(transcript([("agent", "a line from outside the recordings directory")], 0.3))
    link = hardened.recordings / "link.jsonl"
    link.symlink_to(outside)
    try:
        with hardened.client("supervisor") as c:
            names = [r["name"] for r in c.get("/v1/recordings").json()]
            assert "link.jsonl" not in names
            assert "short.jsonl" in names
        r = hardened.start_call("link.jsonl")
        assert r.status_code == 400, r.text
        assert str(tmp_path) not in r.text
        assert str(hardened.recordings) not in r.text
    finally:
        link.unlink()


def test_a_bad_recording_error_does_not_show_where_the_directory_is(hardened: Hardened) -> None:
    bad = hardened.recordings / "broken.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    try:
        r = hardened.start_call("broken.jsonl")
        assert r.status_code == 400, r.text
        assert "broken.jsonl" in r.text
        assert str(hardened.recordings) not in r.text
    finally:
        bad.unlink()


async def _refused_audiohook_upgrades(hardened: Hardened) -> None:
    url = hardened.base.replace("http://", "ws://") + "/v1/taps/audiohook"
    for headers in ({}, {"X-API-KEY": UNKNOWN_TOKEN}, {"X-API-KEY": TOKENS["agent"][0]}):
        with pytest.raises(InvalidStatus):
            async with connect(url, proxy=None, additional_headers=headers, open_timeout=30):
                pass


def test_sse_clients_that_leave_leave_no_error_noise(hardened: Hardened) -> None:
    """Clients that drop their event streams (floor and call), and refused AudioHook upgrades, are
    not errors: no "Task was destroyed but it is pending!", no "ASGI callable returned without
    completing handshake", no other error-level record."""
    r = hardened.start_call("slow.jsonl", realtime=True)
    call_id = r.json()["call_id"]
    with hardened.capture.guard:
        before = len(hardened.capture.records)
    for _ in range(5):
        for path in ("/v1/floor/events", f"/v1/calls/{call_id}/events"):
            with hardened.client("supervisor") as c, c.stream("GET", path) as resp:
                assert resp.status_code == 200
                next(resp.iter_bytes())  # the retry line: then the client goes
    asyncio.run(_refused_audiohook_upgrades(hardened))
    hardened.wait_ended(call_id, timeout_s=90)
    time.sleep(0.5)
    gc.collect()  # a pending task is reported when it is collected
    time.sleep(0.2)
    with hardened.capture.guard:
        records = hardened.capture.records[before:]
    noisy = [f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= logging.ERROR]
    assert not noisy, noisy


def test_api_docs_are_served_without_a_cdn(hardened: Hardened) -> None:
    """/docs works on a machine with no internet: Swagger UI's files come from the service."""
    with httpx.Client(base_url=hardened.base, timeout=30) as c:
        page = c.get("/docs")
        assert page.status_code == 200
        assert "/docs/assets/swagger-ui-bundle.js" in page.text
        assert "cdn" not in page.text.lower()
        for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
            r = c.get(asset)
            assert r.status_code == 200, asset
            assert len(r.content) > 10_000
        assert c.get("/redoc").status_code == 404  # ReDoc would load from a CDN
        assert c.get("/openapi.json").json()["openapi"].startswith("3.")


def test_metrics_need_no_token_and_hold_no_call_token_or_text(hardened: Hardened) -> None:
    """docs/api.md "Operations": /metrics answers without a token, by choice, because it holds only
    counts by route template, status and event type: after a call, no call id, name, token or text."""
    import re

    r = hardened.start_call("short.jsonl")
    assert r.status_code == 201, r.text
    call_id = r.json()["call_id"]
    hardened.wait_ended(call_id)
    with httpx.Client(base_url=hardened.base, timeout=30) as c:
        c.get(f"/v1/calls/{call_id}", headers={"Authorization": f"Bearer {UNKNOWN_TOKEN}"})  # a 401, counted
        resp = c.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    body = resp.text
    assert 'type="transcript.final"' in body  # the call was counted, by event type only
    assert "/v1/calls/{call_id}" in body  # routes by their template
    assert call_id not in body
    for token, name in TOKENS.values():
        assert token not in body
        assert re.search(rf"\b{re.escape(name)}\b", body) is None, name
    assert UNKNOWN_TOKEN not in body
    for text in ("Hello, how can I help?", "Where is my refund?", "refund", "short.jsonl", "alice"):
        assert text not in body, text
