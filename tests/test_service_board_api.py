"""The board as the browser sees it: the JSON of the call list, a call's detail and the floor feed,
and what ``/openapi.json`` says of them.

A scripted pair of calls (every event type the board folds, floats that are and are not rounded)
and a floor warning go through a real service on a bus with a fixed clock; what ``GET /v1/calls``,
``GET /v1/calls/{id}``, ``/v1/floor/events`` and ``/v1/floor/warnings/events`` answer must equal
``fixtures/board/wire.json``, captured from the service before each was typed (issue 14): the
widgets read these keys (the same keys and values, numbers of the same JSON type but for the
warnings' counts; the order of keys is free).
``ASSIST_WRITE_WIRE=1`` rewrites the file (only for a deliberate change of the wire format).

The published schema names every property with its type, all the way down (no untyped object
anywhere under a call's row, its detail or a floor message), and the real answers validate
against it (JSON Schema 2020-12, as OpenAPI 3.1 uses), also under schemathesis's own
``response_schema_conformance`` check with generated queries.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # no stubs in this environment
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from sidecar.kernel.bus import InMemoryBus
from sidecar.kernel.events import (
    Alert,
    Barge,
    CallEnded,
    CallStarted,
    Checklist,
    Emotion,
    Event,
    FloorWarning,
    Intent,
    Score,
    ScoreItem,
    Suggestion,
    TranscriptFinal,
    TranscriptPartial,
    TranscriptRedacted,
    Whisper,
    Word,
)
from sidecar.qa.watch import WARNINGS_STREAM
from tests.service_helpers import LightServer, light_server, read_sse

pytestmark = pytest.mark.unit
WIRE = Path(__file__).parent / "fixtures" / "board" / "wire.json"


class SteppingClock:
    """Wall-clock time that moves a fixed, unround step per reading: the wire is reproducible."""

    def __init__(self) -> None:
        self._now = 1_764_892_800.0

    def wall(self) -> float:
        self._now += 0.2345678
        return self._now

    def elapsed(self) -> float:
        return 0.0

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(0)


def ended_call(call_id: str) -> list[Event]:
    """Every kind of event the board folds, with a number completed across two finals."""
    words = (Word("card", 1.0, 1.4, 0.91234),)
    score = Score(71.23456, {"service_quality": 0.81234, "efficiency": 0.5, "customer_experience": 0.66666},
                  (ScoreItem("politeness", "service_quality", 0.91234, 0.2, "no rude words", (3.14159,)),
                   ScoreItem("dead_air", "efficiency", 1.0, 0.1, "none")))  # fmt: skip
    return [
        Event("call.started", call_id, None, 0, 0, CallStarted("wav", "en", ("agent", "customer"), True,
                                                               {"agent_id": "alice", "queue": "billing"})),
        Event("transcript.partial", call_id, "customer", 0.5, 1.0, TranscriptPartial("my ca", "my", words, "en", 1)),
        Event("transcript.final", call_id, "customer", 0.51234567, 1.98765432,
              TranscriptFinal("my card is 4111 1111", words, "en", 1)),
        Event("transcript.final", call_id, "agent", 2.1, 3.3333333, TranscriptFinal("thank you for calling", (), "en", 2)),
        Event("transcript.redacted", call_id, "customer", 0.51234567, 1.98765432,
              TranscriptRedacted("my card is [card]", words, "en", 1)),
        Event("emotion", call_id, "customer", 1.0, 1.98765432, Emotion(-0.41234, -0.61234, "negative", ("refund", "wait"))),
        Event("alert", call_id, "agent", 3.0, 4.4444444,
              Alert("abuse", "fatal", "abuse.insult", "Stop now.", "shut up", None, "snip-calm", "final", "insult")),
        Event("checklist", call_id, "agent", 4.0, 4.5, Checklist("greeting", "due", True)),
        Event("checklist", call_id, "agent", 4.0, 5.0, Checklist("greeting", "done", True, "thank you for calling")),
        Event("checklist", call_id, None, 9.0, 9.0, Checklist("recording_disclosure", "missed", True)),
        Event("alert", call_id, "agent", 9.0, 9.0,
              Alert("disclosure", "serious", "disclosure.recording", "Say it.", "", "recording_disclosure",
                    None, "checklist")),
        Event("intent", call_id, "customer", 1.0, 2.0, Intent("refund", 0.87654321, "my refund", "intent.refund")),
        Event("suggestion", call_id, "customer", 1.0, 2.0,
              Suggestion("kb-7", "Refunds", "Refunds take 5 days.", 0.76543219, "refund asked", 3)),
        Event("emotion", call_id, "customer", 5.0, 6.1234567, Emotion(-0.75, -0.9, "angry", (), True)),
        Event("emotion", call_id, "customer", 6.0, 6.5, Emotion(-0.77, -0.8, "angry", ())),
        Event("whisper", call_id, "agent", 6.5, 6.5, Whisper("offer the refund", "sam")),
        Event("barge", call_id, None, 7.0, 7.0, Barge("sam", "fatal alert")),
        Event("score", call_id, None, 10.0, 10.0, score),
        Event("call.ended", call_id, None, 0, 10.5, CallEnded("completed", 10.5, {"judge_misses": 0.0})),
    ]  # fmt: skip


def live_call(call_id: str) -> list[Event]:
    return [
        Event("call.started", call_id, None, 0, 0, CallStarted("chat", "zh", ("agent", "customer"), False, {})),
        Event("transcript.final", call_id, "agent", 0.1, 0.9, TranscriptFinal("您好", (), "zh", 1)),
    ]  # fmt: skip


def warnings() -> list[Event]:
    # a complaint burst's value and threshold are counts: ints, where the payload says float
    warning = FloorWarning("complaint_burst", "refund", "3 customers complain about refund", "ep-wire",
                           ("wire-ended", "wire-live"), 1_764_892_790.1234567, 1_764_892_805.7654321, 3, 2)  # fmt: skip
    return [Event("warning.raised", WARNINGS_STREAM, None, 0, 0, warning),
            Event("warning.cleared", WARNINGS_STREAM, None, 0, 0, warning)]  # fmt: skip


def warning_messages(node: LightServer) -> list[dict[str, Any]]:
    """The scripted episode's messages on the floor's warnings stream (the service's own
    watcher may raise others)."""
    out: list[dict[str, Any]] = []
    with (
        node.client() as c,
        c.stream("GET", "/v1/floor/warnings/events", headers={"Last-Event-ID": "0"}) as r,
    ):
        for message in read_sse(r):
            if message["data"].get("episode") == "ep-wire":
                out.append(message)
            if len(out) == 2:
                return out
    raise AssertionError("the warnings stream ended early")


def floor_messages(node: LightServer, count: int) -> list[dict[str, Any]]:
    with node.client() as c, c.stream("GET", "/v1/floor/events", headers={"Last-Event-ID": "0"}) as r:
        out: list[dict[str, Any]] = []
        for message in read_sse(r):
            out.append(message)
            if len(out) == count:
                return out
    raise AssertionError("the floor stream ended early")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LightServer, dict[str, Any]]]:
    """A service whose board holds the two scripted calls, and what it answers about them."""
    bus = InMemoryBus(clock=SteppingClock())
    node = light_server(tmp_path_factory.mktemp("board-api"), bus)
    try:
        app: Any = node.server.config.app
        loop = app.state.ctx.tasks[0].get_loop()  # the service's own loop: the bus lives there

        async def publish() -> None:
            for event in live_call("wire-live") + ended_call("wire-ended") + warnings():
                await bus.publish(event)

        asyncio.run_coroutine_threadsafe(publish(), loop).result(timeout=30)
        # the board follows the bus a moment behind: its last floor message (the call's end)
        # says it has folded in everything
        wire: dict[str, Any] = {"floor": floor_messages(node, 14), "warnings": warning_messages(node)}
        with node.client() as c:
            wire["calls"] = c.get("/v1/calls").json()
            wire["calls_live"] = c.get("/v1/calls", params={"status": "live"}).json()
            wire["detail_ended"] = c.get("/v1/calls/wire-ended").json()
            wire["detail_live"] = c.get("/v1/calls/wire-live").json()
        yield node, wire
    finally:
        node.stop()


def test_the_wire_is_what_the_widgets_were_built_on(served: tuple[LightServer, dict[str, Any]]) -> None:
    _, wire = served
    if os.environ.get("ASSIST_WRITE_WIRE") == "1":
        WIRE.parent.mkdir(parents=True, exist_ok=True)
        WIRE.write_text(json.dumps(wire, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    expected = json.loads(WIRE.read_text(encoding="utf-8"))
    for part in expected:
        assert wire[part] == expected[part], part
        # and no number changed its JSON type (1 and 1.0 compare equal) or digits; key order is free.
        # Not so the warnings: a burst's counts, ints where the payload says float, now read 3.0
        # (the same JSON number to a browser)
        if part != "warnings":
            assert canonical(wire[part]) == canonical(expected[part]), part
    assert wire.keys() == expected.keys()


def canonical(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


DOC = "urn:assist:openapi"
DETAIL = "/v1/calls/{call_id}"
STREAMS = {"floor": "/v1/floor/events", "warnings": "/v1/floor/warnings/events"}  # wire part: SSE path
ANSWERS = ["CallSummary", "CallDetail", "FloorAlert", "Resync", "WarningMessage", "WarningsReset"]


def json_pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def openapi(node: LightServer) -> dict[str, Any]:
    with node.client() as c:
        doc: dict[str, Any] = c.get("/openapi.json").json()
    return doc


def validator(doc: dict[str, Any], pointer: str) -> Draft202012Validator:
    """A validator for the schema at ``pointer`` in the OpenAPI document (its ``$ref``s resolved there)."""
    registry: Registry[Any] = Registry().with_resource(DOC, Resource.from_contents(doc, DRAFT202012))
    return Draft202012Validator({"$ref": f"{DOC}#{pointer}"}, registry=registry)


def response_pointer(path: str) -> str:
    return "/" + json_pointer(
        "paths", path, "get", "responses", "200", "content", "application/json", "schema"
    )


def stream_items_pointer(path: str) -> str:
    """The ``oneOf`` of an SSE route's messages (one per ``event`` name)."""
    return "/" + json_pointer("paths", path, "get", "responses", "200", "content", "text/event-stream",
                              "itemSchema", "oneOf")  # fmt: skip


def untyped(schemas: dict[str, Any], roots: list[str]) -> list[str]:
    """Where, under the ``roots`` components, a schema says nothing of what it holds: an empty
    schema (any value), or an object with neither properties nor a typed value schema."""
    found: list[str] = []
    seen: set[str] = set()

    def walk(node: Any, where: str) -> None:
        if not isinstance(node, dict):
            return
        if "$ref" in node:
            name = node["$ref"].rpartition("/")[2]
            if name not in seen:
                seen.add(name)
                walk(schemas[name], name)
            return
        typed = {"type", "anyOf", "oneOf", "allOf", "const", "enum"} & node.keys()
        if not typed:
            found.append(where)
        if node.get("type") == "object":
            values = node.get("additionalProperties")
            if not node.get("properties") and not (isinstance(values, dict) and values):
                found.append(where)
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{where}.{key}")
        for key in ("items", "additionalProperties"):
            walk(node.get(key), f"{where}[]")
        for key in ("anyOf", "oneOf", "allOf"):
            for i, sub in enumerate(node.get(key, [])):
                walk(sub, f"{where}|{i}")

    for root in roots:
        walk({"$ref": f"#/components/schemas/{root}"}, root)
    return found


def test_openapi_types_the_call_list_the_detail_and_the_floor(
    served: tuple[LightServer, dict[str, Any]],
) -> None:
    node, _ = served
    doc = openapi(node)
    schemas = doc["components"]["schemas"]
    paths = doc["paths"]
    ref = "#/components/schemas/"
    assert paths[DETAIL]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": ref + "CallDetail"
    }
    listed = paths["/v1/calls"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert (listed["type"], listed["items"]) == ("array", {"$ref": ref + "CallSummary"})
    floor = paths["/v1/floor/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]["itemSchema"]
    kinds = {
        i["properties"]["event"]["const"]: i["properties"]["data"]["contentSchema"] for i in floor["oneOf"]
    }
    assert kinds == {"call": {"$ref": ref + "CallSummary"}, "alert": {"$ref": ref + "FloorAlert"},
                     "error": {"$ref": ref + "Resync"}}  # fmt: skip
    warned = paths["/v1/floor/warnings/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    kinds = {i["properties"]["event"]["const"]: i["properties"]["data"]["contentSchema"]
             for i in warned["itemSchema"]["oneOf"]}  # fmt: skip
    assert kinds == {"warning.raised": {"$ref": ref + "WarningMessage"},
                     "warning.cleared": {"$ref": ref + "WarningMessage"}, "reset": {"$ref": ref + "WarningsReset"}}  # fmt: skip

    before = {"X": {"type": "object", "properties": {"a": {"type": "object", "additionalProperties": True},
                                                   "b": {}}}}  # fmt: skip
    assert untyped(before, ["X"]) == ["X.a", "X.b"]  # dict[str, Any] and Any, as the detail had them
    assert untyped(schemas, ANSWERS) == []
    detail = schemas["CallDetail"]["properties"]
    assert detail["transcript"]["items"] == {"$ref": ref + "TranscriptLine"}
    assert detail["alerts"]["items"] == {"$ref": ref + "AlertItem"}
    assert detail["checklist"]["additionalProperties"] == {"$ref": ref + "ChecklistStep"}
    assert detail["emotion"]["items"] == {"$ref": ref + "EmotionPoint"}
    assert detail["suggestions"]["items"] == {"$ref": ref + "SuggestionItem"}
    assert {"$ref": ref + "Score"} in detail["scorecard"]["anyOf"]
    line = schemas["TranscriptLine"]["properties"]
    assert {k: line[k]["type"] for k in ("seq", "t_start", "text", "segment")} == {
        "seq": "integer", "t_start": "number", "text": "string", "segment": "integer"}  # fmt: skip
    assert schemas["AlertItem"]["properties"]["severity"]["enum"] == ["fatal", "serious", "general"]
    assert schemas["ChecklistStep"]["properties"]["state"]["enum"] == ["due", "done", "missed"]
    summary = schemas["CallSummary"]["properties"]
    assert summary["alerts"] == {"$ref": ref + "AlertCounts"}
    assert summary["checklist"] == {"$ref": ref + "ChecklistCounts"}
    assert summary["temperatures"]["items"] == {"type": "number"}


def test_real_answers_validate_against_the_published_schema(
    served: tuple[LightServer, dict[str, Any]],
) -> None:
    node, wire = served
    doc = openapi(node)
    listed = validator(doc, response_pointer("/v1/calls"))
    detailed = validator(doc, response_pointer(DETAIL))
    for part in ("calls", "calls_live"):
        listed.validate(wire[part])
    for part in ("detail_ended", "detail_live"):
        detailed.validate(wire[part])
    for part, path in STREAMS.items():
        items = stream_items_pointer(path)
        kinds = [i["properties"]["event"]["const"] for i in doc["paths"][path]["get"]["responses"]["200"]
                 ["content"]["text/event-stream"]["itemSchema"]["oneOf"]]  # fmt: skip
        frame = validator(doc, items.rpartition("/")[0])
        for message in wire[part]:
            frame.validate({**message, "data": json.dumps(message["data"])})  # the SSE frame's fields
            data = validator(doc, f"{items}/{kinds.index(message['event'])}/properties/data/contentSchema")
            data.validate(message["data"])

    # and the schema is no rubber stamp: what the widgets could not read fails it
    broken = json.loads(json.dumps(wire["detail_ended"]))
    broken["alerts"][0]["severity"] = "urgent"
    del broken["transcript"][0]["text"]
    broken["checklist"]["greeting"]["state"] = 1
    broken["scorecard"]["items"][0]["evidence_s"] = ["3.1"]
    errors = sorted({".".join(map(str, e.absolute_path)) for e in detailed.iter_errors(broken)})
    assert errors == ["alerts.0.severity", "checklist.greeting.state", "scorecard", "transcript.0"], errors


ST = Path(sys.executable).with_name("st")


@pytest.mark.timeout(300)
def test_schemathesis_finds_the_answers_conform(
    served: tuple[LightServer, dict[str, Any]], tmp_path: Path
) -> None:
    """Schemathesis's own conformance check on the call list and detail of the scripted calls
    (generated filters and ids, each answer checked against the published schema)."""
    node, _ = served
    config = tmp_path / "schemathesis.toml"
    config.write_text('[parameters]\n"path.call_id" = "wire-ended"\n', encoding="utf-8")
    cmd = [
        str(ST), "--config-file", str(config), "run", f"{node.base}/openapi.json",
        "--checks", "response_schema_conformance,not_a_server_error",
        "--header", f"Authorization: Bearer {node.token}",
        "--include-operation-id", "list_calls_v1_calls_get",
        "--include-operation-id", "get_call_v1_calls__call_id__get",
        "--phases", "examples,fuzzing",
        "--max-time", "15",  # a time budget: fuzzing goes on until it is spent (thousands of requests)
        "--generation-deterministic",
        "--workers", "1",
        "--no-color",
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "", "HOME": str(tmp_path)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "2 passed" in done.stdout or "No issues found" in done.stdout, report


def test_a_calls_event_stream_is_typed_per_event_and_real_events_validate(
    served: tuple[LightServer, dict[str, Any]],
) -> None:
    node, _ = served
    doc = openapi(node)
    path = "/v1/calls/{call_id}/events"
    items = stream_items_pointer(path)
    oneof = doc["paths"][path]["get"]["responses"]["200"]["content"]["text/event-stream"]["itemSchema"][
        "oneOf"
    ]
    kinds = {
        i["properties"]["event"]["const"]: i["properties"]["data"]["contentSchema"]["$ref"] for i in oneof
    }
    typed = {e.type for e in ended_call("x")}  # every type a call's stream carries
    assert set(kinds) == typed | {"error"}
    assert kinds["transcript.final"] == "#/components/schemas/TranscriptFinalEvent"
    models = [ref.rpartition("/")[2] for ref in kinds.values()]
    assert untyped(doc["components"]["schemas"], models) == []
    with node.client() as c, c.stream("GET", "/v1/calls/wire-ended/events") as r:
        messages = list(read_sse(r))
    assert [m["event"] for m in messages] == [e.type for e in ended_call("x")]
    event_kinds = list(kinds)
    for message in messages:
        data = validator(doc, f"{items}/{event_kinds.index(message['event'])}/properties/data/contentSchema")
        data.validate(message["data"])
    # a payload of the wrong shape for its type fails its schema
    alert = next(m["data"] for m in messages if m["event"] == "alert")
    schema = validator(doc, f"{items}/{event_kinds.index('alert')}/properties/data/contentSchema")
    assert not schema.is_valid({**alert, "payload": {**alert["payload"], "severity": 3}})
    assert not schema.is_valid({**alert, "type": "transcript.final"})
