"""Start a LiveKit tap session on an agent-assist service and follow the call it makes.

POSTs ``/v1/taps/livekit/sessions`` (the service joins the room), waits for the session to go
``live`` (or prints why it ``failed``), then follows the call's events
(``GET /v1/calls/{id}/events``, SSE) and prints the transcript and the alerts until the call
ends. Ctrl-C stops the session (``DELETE``: the service leaves the room and ends the call).

The LiveKit join token is yours to mint (roomJoin, canSubscribe, hidden; see
docs/taps/livekit.md). ``--api-token`` needs the ``taps.connect`` permission (integrator or
admin); following the call needs a token that may read it (admin, supervisor, or the call's
agent): ``--follow-token``, default ``--api-token`` (enough with an admin token).

    python examples/taps/livekit_session.py --server http://127.0.0.1:8000 --api-token ADMIN \\
        --url wss://my-project.livekit.cloud --token "$TAP_JOIN_TOKEN" \\
        --agent-identity agent-alice --customer-identity-prefix sip_ --agent-id alice
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--server", default="http://127.0.0.1:8000", help="the agent-assist service")
    p.add_argument("--api-token", default=os.environ.get("ASSIST_TOKEN"),
                   help="integrator or admin token (default: $ASSIST_TOKEN)")  # fmt: skip
    p.add_argument("--follow-token", default=None, help="token that may read the call (default: --api-token)")
    p.add_argument("--url", required=True, help="the LiveKit server, e.g. wss://my-project.livekit.cloud")
    p.add_argument("--token", default=os.environ.get("LIVEKIT_TOKEN"),
                   help="the tap's LiveKit join token (default: $LIVEKIT_TOKEN)")  # fmt: skip
    p.add_argument("--room", default=None, help="the room (must be the token's; default: the token's)")
    p.add_argument("--agent-identity", default=None)
    p.add_argument("--customer-identity", default=None)
    p.add_argument("--agent-identity-prefix", default=None)
    p.add_argument("--customer-identity-prefix", default=None)
    p.add_argument("--channel-attribute", default=None, help='e.g. assist.channel ("agent" | "customer")')
    p.add_argument("--lang", default="en", choices=["en", "zh", "auto"])
    p.add_argument("--agent-id", default="")
    p.add_argument("--queue", default="")
    p.add_argument("--call-id", default=None)
    p.add_argument("--join-timeout", type=float, default=90.0, help="seconds to wait for the room")
    args = p.parse_args(argv)
    if not args.api_token:
        p.error("--api-token (or $ASSIST_TOKEN) is required")
    if not args.token:
        p.error("--token (or $LIVEKIT_TOKEN) is required")
    return args


def session_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"url": args.url, "token": args.token, "lang": args.lang,
                            "agent_id": args.agent_id, "queue": args.queue}  # fmt: skip
    optional = ("room", "agent_identity", "customer_identity", "agent_identity_prefix",
                "customer_identity_prefix", "channel_attribute", "call_id")  # fmt: skip
    for key in optional:
        value = getattr(args, key)
        if value:
            body[key] = value
    return body


def read_sse(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) for each SSE message."""
    event, data = "message", ""
    for line in response.iter_lines():
        if not line:
            if data:
                yield event, json.loads(data)
            event, data = "message", ""
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()


def show(event: str, data: dict[str, Any]) -> None:
    payload = data.get("payload") or {}
    if event == "transcript.final":
        print(f"[{data.get('t_start', 0):7.1f}s] {data.get('channel', '?'):>8}: {payload.get('text', '')}")
    elif event == "alert":
        print(
            f"           ALERT {payload.get('severity')}/{payload.get('category')}: {payload.get('message', '')}"
        )
    elif event == "suggestion":
        print(f"           suggestion: {payload.get('title', '')}")
    elif event in ("call.started", "call.ended"):
        print(f"--- {event} {json.dumps(payload)[:200]}")


def wait_live(client: httpx.Client, call_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = client.get(f"/v1/taps/livekit/sessions/{call_id}")
        r.raise_for_status()
        session: dict[str, Any] = r.json()
        if session["state"] != "connecting" or time.monotonic() > deadline:
            return session
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tap = httpx.Client(
        base_url=args.server, headers={"Authorization": f"Bearer {args.api_token}"}, timeout=30
    )
    follow_token = args.follow_token or args.api_token
    r = tap.post("/v1/taps/livekit/sessions", json=session_body(args))
    if r.status_code != 202:
        print(f"session refused: {r.status_code} {r.text}", file=sys.stderr)
        return 1
    call_id = r.json()["call_id"]
    print(f"session {call_id}: joining room {r.json()['room']} ...")
    try:
        session = wait_live(tap, call_id, args.join_timeout)
        if session["state"] != "live":
            print(f"session {call_id}: {session['state']}: {session.get('error') or session.get('ended_reason')}",
                  file=sys.stderr)  # fmt: skip
            return 1
        print(f"session {call_id}: live; following /v1/calls/{call_id}/events (Ctrl-C stops the session)")
        headers = {"Authorization": f"Bearer {follow_token}"}
        with httpx.stream("GET", f"{args.server}/v1/calls/{call_id}/events", params={"after": 0},
                          headers=headers, timeout=httpx.Timeout(30, read=60)) as events:  # fmt: skip
            if events.status_code != 200:
                events.read()
                print(f"cannot follow the call: {events.status_code} {events.text}", file=sys.stderr)
                return 1
            for event, data in read_sse(events):
                show(event, data)
                if event == "call.ended":
                    break
        print(f"session {call_id}: {wait_live(tap, call_id, 0)['state']}")
        return 0
    except KeyboardInterrupt:
        print(f"\nstopping session {call_id} ...")
        tap.delete(f"/v1/taps/livekit/sessions/{call_id}")
        return 130
    finally:
        tap.close()


if __name__ == "__main__":
    sys.exit(main())
