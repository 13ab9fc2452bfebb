"""A bounded fuzzing pass (hypothesis) over what strangers can send: the taps' protocol parsers
(Twilio Media Streams, Genesys AudioHook, L16 metadata, AudioSocket framing) and the rule-pack
loader. Each may refuse its input only with its own protocol error, never crash with another
exception. Crashes found here are kept as explicit examples (``@example``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from coach.rules import RulePackError, load_rules
from sidecar.taps import audiohook, l16, twilio
from sidecar.taps.audiosocket import LegError, read_message
from sidecar.taps.ws import TapProtocolError

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

KEYS = st.sampled_from([
    "event", "start", "media", "mediaFormat", "encoding", "sampleRate", "channels", "customParameters", "lang",
    "call_id", "inbound", "tracks", "payload", "timestamp", "track", "sample_rate", "mixType", "mix_type",
    "channel", "callSid", "agent_id", "queue", "metadata", "type", "version", "id", "seq", "serverseq",
    "position", "parameters", "format", "rate", "conversationId", "customConfig", "participant", "language",
    "organizationId", "rules", "match", "regex", "phrases", "pack", "category", "message", "timing",
])  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=24)
    | st.sampled_from(["audio", "PCMU", "L16", "audio/x-mulaw", "open", "ping", "start", "media", "stereo",
                       "mono", "agent", "customer", "inbound", "outbound", "en", "zh", "en-US", "PT1.5S"])
    | st.sampled_from([8000, 16000, 0, -1, 8001])
)  # fmt: skip
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=24,
)
OBJECTS = st.dictionaries(KEYS, JSON, max_size=8)


def as_text(value: Any) -> str:
    return json.dumps(value)


@FUZZ
@given(st.one_of(st.text(max_size=200), OBJECTS.map(as_text)))
def test_twilio_messages(text: str) -> None:
    try:
        message = twilio.parse_message(text)
    except TapProtocolError:
        return
    for parse in (twilio.parse_start, twilio.parse_media):
        with contextlib.suppress(TapProtocolError):
            parse(message)


@FUZZ
@given(OBJECTS, OBJECTS)
def test_twilio_start_and_media(start: dict[str, Any], media: dict[str, Any]) -> None:
    for parse, message in ((twilio.parse_start, {"event": "start", "start": start}),
                           (twilio.parse_media, {"event": "media", "media": media})):  # fmt: skip
        with contextlib.suppress(TapProtocolError):
            parse(message)


@FUZZ
@given(
    st.one_of(st.text(max_size=200), OBJECTS.map(as_text), OBJECTS.map(lambda o: as_text({"metadata": o})))
)
@example('{"lang": {}}')
@example('{"mixType": "stereo", "channels": [[], {}]}')
def test_l16_metadata(text: str) -> None:
    with contextlib.suppress(TapProtocolError):
        l16.parse_metadata(text)


@FUZZ
@given(st.one_of(st.text(max_size=200), OBJECTS.map(as_text)))
def test_audiohook_client_messages(text: str) -> None:
    with contextlib.suppress(audiohook.ProtocolError):
        audiohook.parse_client_message(text)


@FUZZ
@given(JSON, JSON, OBJECTS)
@example([{"type": "audio", "format": "PCMU", "rate": 8000, "channels": [[1], [2]]}], None, {})
@example([{"type": "audio", "format": "L16", "rate": 8000, "channels": [{}]}], None, {})
def test_audiohook_open_parameters(media: Any, language: Any, params: dict[str, Any]) -> None:
    with contextlib.suppress(audiohook.ProtocolError):
        audiohook.choose_media(media)
    with contextlib.suppress(audiohook.ProtocolError):
        audiohook.call_language(language)
    with contextlib.suppress(audiohook.ProtocolError):
        audiohook.call_meta("session", "correlation", params)


@FUZZ
@given(
    st.binary(max_size=2048),
    st.sampled_from(["PCMU", "L16"]),
    st.sampled_from([("external",), ("external", "internal")]),
)
def test_audiohook_audio_frames(data: bytes, fmt: str, channels: tuple[str, ...]) -> None:
    media = audiohook.MediaFormat(fmt, channels)  # type: ignore[arg-type]
    try:
        out = audiohook.decode_audio(data, media)
    except audiohook.ProtocolError:
        return
    assert len(out) == len(channels)


async def _read_all(data: bytes) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    for _ in range(64):
        try:
            message = await read_message(reader)
        except LegError:
            return
        if message is None:
            return
        kind, payload = message
        assert 0 <= kind <= 255
        assert len(payload) <= 65535


@FUZZ
@given(st.binary(max_size=4096))
@example(b"\x10\x00\x10" + bytes(16))
@example(b"\x10\xff\xff")
def test_audiosocket_framing(data: bytes) -> None:
    asyncio.run(_read_all(data))


ENTRY = st.fixed_dictionaries(
    {"id": st.text(max_size=12) | st.just("r.one"), "category": st.sampled_from(["abuse", "dead_air", "x"]) | JSON},
    optional={"match": JSON | st.fixed_dictionaries({}, optional={
        "phrases": JSON, "regex": st.lists(st.text(max_size=12), max_size=3) | JSON, "exemplars": JSON,
        "threshold": JSON, "unless": JSON, "context": JSON, "timing": JSON, "pii": JSON}),
        "message": JSON, "severity": JSON, "channel": JSON, "lang": JSON, "enabled": JSON},
)  # fmt: skip
PACKS = st.fixed_dictionaries(
    {"pack": JSON | st.just("p"), "version": JSON | st.just(1)},
    optional={"rules": st.lists(ENTRY, max_size=3) | JSON, "intents": st.lists(ENTRY, max_size=2) | JSON,
              "disclosures": st.lists(ENTRY, max_size=2) | JSON, "lang": JSON, "neutral": JSON},
)  # fmt: skip


@FUZZ
@given(st.one_of(PACKS.map(lambda d: yaml.safe_dump(d, allow_unicode=True)), st.text(max_size=300)))
@example("rules:\n  - id: a\n    match: {regex: ['(a+)+$']}\n")
@example("pack: p\nversion: 1\nrules:\n  - id: a\n    category: [abuse]\n    message: m\n")  # was a TypeError
@example("pack: p\nversion: 1\n? [a, b]\n: c\n")  # a list as a mapping key: was a TypeError
@example("version: 1\npack: p\nrules: [{id: a, category: abuse, message: m, match: {regex: ['(?<!x)y']}}]\n")
def test_rule_loader(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    directory: Path = tmp_path_factory.mktemp("fuzz-pack")
    (directory / "rules.yaml").write_text(text, encoding="utf-8")
    with contextlib.suppress(RulePackError):
        load_rules(directory)
