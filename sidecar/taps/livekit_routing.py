"""LiveKit tap: who is who, which participant's audio track feeds which channel of the call.

Channel mapping, per participant when its audio track is subscribed (``auto_subscribe`` is
off: the tap subscribes to every remote audio track as it is published, never to video): our
own participant is skipped; then its identity equal to ``agent_identity`` /
``customer_identity``; else the longest matching ``*_identity_prefix``; else the value
(``agent`` | ``customer``) of its attribute ``channel_attribute`` (or of that key in its
metadata, when the metadata is a JSON object). Video tracks, participants that map to no
channel, and a second track for a channel another track already feeds are ignored (listed, with
why, in the session's ``ignored``). A track unsubscribed and subscribed again (or another track
of that channel) continues the same channel of the call.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Literal, TypeAlias

from livekit import rtc

from sidecar.kernel.events import CHANNELS, Channel


@dataclass(frozen=True, slots=True)
class Party:
    """A participant as the router sees it."""

    identity: str
    attributes: tuple[tuple[str, str], ...] = ()
    metadata: str = ""

    @classmethod
    def of(cls, participant: rtc.Participant) -> Party:
        return cls(participant.identity, tuple(sorted(participant.attributes.items())), participant.metadata)

    def attribute(self, key: str) -> str | None:
        """``key`` in the attributes, else in the metadata when it is a JSON object."""
        value = dict(self.attributes).get(key)
        if value is not None:
            return value
        if self.metadata.lstrip().startswith("{"):
            with contextlib.suppress(ValueError):
                meta = json.loads(self.metadata)
                found = meta.get(key) if isinstance(meta, dict) else None
                return found if isinstance(found, str) else None
        return None


@dataclass(frozen=True, slots=True)
class ChannelMapping:
    """How participants map to the call's channels (see the module docstring for the order)."""

    agent_identity: str | None = None
    customer_identity: str | None = None
    agent_prefix: str | None = None
    customer_prefix: str | None = None
    attribute: str | None = None  # e.g. "assist.channel" = "agent" | "customer"

    def __post_init__(self) -> None:
        for channel, identity, prefix in (("agent", self.agent_identity, self.agent_prefix),
                                          ("customer", self.customer_identity, self.customer_prefix)):  # fmt: skip
            if not identity and not prefix and not self.attribute:
                raise ValueError(
                    f"nothing maps the {channel}: give {channel}_identity, {channel}_identity_prefix "
                    "or channel_attribute"
                )
        if self.agent_identity and self.agent_identity == self.customer_identity:
            raise ValueError("agent_identity and customer_identity must differ")
        if self.agent_prefix and self.agent_prefix == self.customer_prefix:
            raise ValueError("agent_identity_prefix and customer_identity_prefix must differ")

    def identities(self) -> tuple[str, ...]:
        return tuple(i for i in (self.agent_identity, self.customer_identity) if i)

    def channel_of(self, party: Party) -> Channel | None:
        if party.identity == self.agent_identity:
            return "agent"
        if party.identity == self.customer_identity:
            return "customer"
        best: tuple[int, Channel] | None = None
        prefixes: tuple[tuple[str | None, Channel], ...] = (
            (self.agent_prefix, "agent"),
            (self.customer_prefix, "customer"),
        )
        for prefix, channel in prefixes:
            if prefix and party.identity.startswith(prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), channel)  # the longest matching prefix wins
        if best is not None:
            return best[1]
        if self.attribute:
            value = party.attribute(self.attribute)
            for channel in CHANNELS:
                if value == channel:
                    return channel
        return None


@dataclass(frozen=True, slots=True)
class Routed:
    channel: Channel


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str


TrackKind: TypeAlias = Literal["audio", "video", "other"]


class TrackRouter:
    """Which subscribed track feeds which channel: at most one track per channel at a time."""

    def __init__(self, mapping: ChannelMapping, own_identity: str = "") -> None:
        self.mapping = mapping
        self.own_identity = own_identity
        self._feeding: dict[Channel, tuple[str, str]] = {}  # channel → (identity, track sid)

    def channel_of(self, party: Party) -> Channel | None:
        if self.own_identity and party.identity == self.own_identity:
            return None
        return self.mapping.channel_of(party)

    def route(self, party: Party, track_sid: str, kind: TrackKind) -> Routed | Ignored:
        if kind != "audio":
            return Ignored(f"a {kind} track (only audio is transcribed)")
        if self.own_identity and party.identity == self.own_identity:
            return Ignored("our own participant")
        channel = self.mapping.channel_of(party)
        if channel is None:
            return Ignored("the participant maps to no channel")
        feeding = self._feeding.get(channel)
        if feeding is not None and feeding[1] != track_sid:
            return Ignored(f"the {channel} channel is already fed by another track")
        self._feeding[channel] = (party.identity, track_sid)
        return Routed(channel)

    def release(self, track_sid: str) -> Channel | None:
        """The track no longer feeds its channel (unsubscribed, ended): another track may."""
        for channel, (_, sid) in list(self._feeding.items()):
            if sid == track_sid:
                del self._feeding[channel]
                return channel
        return None

    def feeders(self) -> dict[Channel, str]:
        """channel → the identity whose track feeds it now."""
        return {channel: identity for channel, (identity, _) in self._feeding.items()}
