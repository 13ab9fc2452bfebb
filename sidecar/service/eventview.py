"""A call's events as the API sends them (its SSE stream, a whisper's or barge's answer), typed.

One model per event type, named after it (``transcript.final`` → ``TranscriptFinalEvent``): the
envelope every event has (``type``, ``call_id``, ``seq``, ``channel``, times) around that type's
payload, the kernel's dataclass itself (``kernel/events.py``'s ``PAYLOAD_TYPES``), so a payload
field added there is in the published schema with no change here. The models describe
``/openapi.json`` and check the whisper and barge answers; the stream is written from the events'
own JSON (``Event.to_json``), not through them.
"""

from __future__ import annotations

import re
from typing import Any, Generic, Literal, TypeVar, Union

from pydantic import BaseModel, Field, create_model

from sidecar.kernel.events import PAYLOAD_TYPES, Channel
from sidecar.service.callview import Seconds

P = TypeVar("P")


class WireEvent(BaseModel, Generic[P]):
    type: str
    call_id: str
    seq: int = Field(description="the event's place in its call's stream, from 1 (the SSE id)")
    channel: Channel | None
    t_start: Seconds
    t_end: Seconds
    emitted_at: float = Field(description="when the bus stamped it (epoch seconds)")
    payload: P


def model_name(event_type: str) -> str:
    """``transcript.final`` → ``TranscriptFinalEvent``."""
    return "".join(part.capitalize() for part in re.split(r"[._]", event_type)) + "Event"


def _event_model(event_type: str, payload: type[Any]) -> type[WireEvent[Any]]:
    model: type[WireEvent[Any]] = create_model(
        model_name(event_type),
        __base__=WireEvent[payload],  # type: ignore[valid-type]
        __module__=__name__,
        type=(Literal[event_type], ...),  # type: ignore[arg-type]  # a Literal made at run time
    )
    return model


# a call's own events (the floor's early warnings are not on a call's stream)
CALL_EVENTS: dict[str, type[WireEvent[Any]]] = {
    event_type: _event_model(event_type, payload)
    for event_type, payload in PAYLOAD_TYPES.items()
    if not event_type.startswith("warning.")
}
CallEventOut = Union[tuple(CALL_EVENTS.values())]  # type: ignore[valid-type]  # noqa: UP007
WhisperEvent = CALL_EVENTS["whisper"]
BargeEvent = CALL_EVENTS["barge"]
