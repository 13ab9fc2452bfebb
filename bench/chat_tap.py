"""Benchmark the chat tap: how long a chat message takes from the client's send to its ``ack``
(coached and published: transcript, alerts, cards), one chat and several at once.

    .venv/bin/python bench/chat_tap.py [--messages 64] [--chats 4]

Starts the real service in-process on 127.0.0.1 (sample knowledge base, the shipped rule pack with
its judge, a temporary data directory), then: one chat of ``--messages`` messages sent one after
another (each waits for its ack), then ``--chats`` chats at once with the same messages. The
messages alternate agent and customer turns written for this bench (greetings, needs, an insult, a
promise, a card number). A message refused by the rate limit (20 at once, then 2 a second per
socket) is sent again half a second later: ``messages_per_s`` is bounded by it; the latencies are
each accepted message's own. Prints a small table, then one JSON line. Start-up (loading the
embedders and fitting the judge) is reported apart: it is not per-message cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from sidecar.service.app import create_app
from sidecar.service.auth import Principal, TokenEntry, TokenTable
from sidecar.service.config import SAMPLES, ServiceConfig
from sidecar.service.serve import make_server

TOKEN = "bench-integrator-token"
LINES = [
    ("agent", "Hello, you're chatting with the help desk, what can I sort out for you?"),
    ("customer", "My order was meant to arrive on Monday and the tracking has been stuck for days."),
    ("agent", "Sorry about that, let me look the order up for you."),
    ("customer", "I also sent a lamp back a fortnight ago and the money still hasn't appeared."),
    ("agent", "Do you even listen to what I type, you absolute moron?"),
    ("customer", "My card number is 4929 1234 5678 9012 if you need it."),
    ("agent", "I guarantee the parcel will be at your door by tomorrow morning."),
    ("customer", "Okay, thanks, is there anything else you need from me?"),
]
TAILS = ["", " Thanks.", " Right then.", " Okay.", " Sorry.", " Please.", " Great.", " Cheers."]
OTHERS = [
    "",
    " Anyway.",
    " Also the weather is awful.",
    " Bye for now.",
    " Just so you know.",
    " Hm.",
    " As I said.",
    " By the way.",
]


def start_service(data: Path) -> tuple[str, Any, float]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    tokens = TokenTable([TokenEntry(TOKEN, Principal("bench", "integrator"))])
    config = ServiceConfig(
        data_dir=data, kb_seed=SAMPLES / "sample-kb.jsonl", tokens=tokens, preload_lang=None
    )
    began = time.perf_counter()
    server = make_server(create_app(config), "127.0.0.1", port)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("the service did not start")
        time.sleep(0.1)
    return f"ws://127.0.0.1:{port}/v1/taps/chat?access_token={TOKEN}", server, time.perf_counter() - began


async def one_chat(url: str, messages: int, chat: int) -> list[float]:
    """Ack latencies (ms) of one chat's messages, sent one after another."""
    out = []
    t0 = int(time.time() * 1000)
    async with connect(url, proxy=None, compression=None, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "start", "agent_id": "bench", "queue": "bench", "ts": t0}))
        json.loads(await ws.recv())
        for i in range(messages):
            channel, text = LINES[i % len(LINES)]
            # no text repeats (no cache hits) within 64 messages of a chat and 8 chats
            text += TAILS[(i // len(LINES)) % len(TAILS)] + OTHERS[chat % len(OTHERS)]
            frame = json.dumps({"channel": channel, "text": text, "ts": t0 + 5000 * i})
            while True:  # over the rate limit (20 at once, 2 a second): wait and send it again
                sent = time.perf_counter()
                await ws.send(frame)
                answer = json.loads(await ws.recv())
                if answer["type"] != "error" or answer["code"] != "rate_limited":
                    break
                await asyncio.sleep(0.5)
            assert answer["type"] == "ack", answer
            out.append(1000 * (time.perf_counter() - sent))
        await ws.send(json.dumps({"type": "end"}))
    return out


def summary(name: str, ms: list[float], wall_s: float) -> dict[str, Any]:
    q = statistics.quantiles(ms, n=20) if len(ms) >= 2 else ms * 19
    return {"case": name, "messages": len(ms), "p50_ms": round(statistics.median(ms), 1),
            "p95_ms": round(q[18], 1), "max_ms": round(max(ms), 1),
            "messages_per_s": round(len(ms) / wall_s, 2)}  # fmt: skip


async def run(url: str, messages: int, chats: int) -> list[dict[str, Any]]:
    rows = []
    began = time.perf_counter()
    ms = await one_chat(url, messages, 0)
    rows.append(summary("1 chat", ms, time.perf_counter() - began))
    began = time.perf_counter()
    results = await asyncio.gather(*(one_chat(url, messages, 1 + c) for c in range(chats)))
    rows.append(
        summary(f"{chats} chats at once", [x for r in results for x in r], time.perf_counter() - began)
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=64, help="messages per chat")
    parser.add_argument("--chats", type=int, default=4, help="chats at once in the second case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url, server, startup_s = start_service(Path(tmp))
        try:
            rows = asyncio.run(run(url, args.messages, args.chats))
        finally:
            server.should_exit = True
    print(f"service start (embedders, judge fit, index): {startup_s:.1f} s")
    print(f"{'case':<18} {'msgs':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'msg/s':>7}")
    for r in rows:
        print(
            f"{r['case']:<18} {r['messages']:>5} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['max_ms']:>8} {r['messages_per_s']:>7}"
        )
    print(json.dumps({"startup_s": round(startup_s, 1), "cases": rows}))


if __name__ == "__main__":
    main()
