"""Asterisk AudioSocket tap: a TCP server (one socket per call leg) and the REST route that says
which call and channel each leg belongs to.

Protocol (docs.asterisk.org, Channel-Drivers/AudioSocket; ``res_audiosocket.h``): every message
is a 3-byte header (1-byte type, 2-byte big-endian payload length) and the payload. Types:
``0x00`` hangup, ``0x01`` the leg's UUID (16 bytes, always the first message), ``0x03`` a DTMF
digit (1 ASCII byte), ``0x10`` audio as signed 16-bit little-endian mono PCM at 8 kHz, ``0x11``
to ``0x18`` the same at 12, 16, 24, 32, 44.1, 48, 96 and 192 kHz (added to Asterisk in October
2025: a ``slin16`` channel then sends ``0x12``), ``0xff`` an Asterisk-side error (optional code).
Closing the socket is a hangup too. This tap only listens: it never sends anything back (a
``0x00`` from us would hang up the channel).

Channel mapping: ``POST /v1/taps/audiosocket/legs`` ``{uuid, call_id, channel, agent_id?, lang?,
queue?}`` (``taps.connect``: integrator or admin) registers a leg before Asterisk connects. Legs
with the same ``call_id`` are one call; the call starts when its first leg connects and ends when
every connected leg has hung up, once all registered legs have come, or ``leg_wait_s`` after the
last one left if a registered leg never came. An unregistered UUID is refused (the socket is
closed and the refusal logged), or, with ``ASSIST_AUDIOSOCKET_UNREGISTERED=customer``, becomes a
call of its own (``audiosocket-<uuid>``) on the ``customer`` channel.

Auth: AudioSocket has none. The server binds ``127.0.0.1`` unless configured otherwise and must
only be reachable over a trusted network; the UUID registration is the only gate.

Limits: payloads are read with ``readexactly`` after the header. A payload over ``MAX_PAYLOAD``
bytes, an odd-length audio payload or a first message that is not a UUID end the leg (reason
``protocol_error``); a truncated message or ``idle_timeout_s`` without a message end it as
``dropped``; a hangup, or the socket closed between messages, as ``completed``; an Asterisk error
message as ``error``. The call's ``call.ended`` gives the reason of its last leg.

Drop policy: the reader never waits on ASR: ``LiveCall`` drops the oldest audio when recognition
falls behind, and before the call has started at most ``PENDING_S`` of audio per channel is kept
(oldest dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Literal
from uuid import UUID

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import BaseModel, Field

from sidecar.audio import Pcm16
from sidecar.calls.access import Caller, TapCalls
from sidecar.calls.errors import CallNotLiveError, TooManyCallsError
from sidecar.calls.live_call import CallMeta, LiveCall
from sidecar.kernel.errors import ConfigError, InputError
from sidecar.kernel.events import Channel
from sidecar.taps.access import allowed, get_calls
from sidecar.taps.hold import HeldAudio

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/taps", tags=["taps"])

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_ERROR = 0xFF
AUDIO_RATES = {0x10: 8000, 0x11: 12000, 0x12: 16000, 0x13: 24000, 0x14: 32000, 0x15: 44100,
               0x16: 48000, 0x17: 96000, 0x18: 192000}  # fmt: skip
MAX_PAYLOAD = 32_768  # 2 s at 8 kHz, 170 ms at 96 kHz; Asterisk sends 20 ms frames
PENDING_S = 8.0  # audio kept per channel while the call starts (below the pipeline's 10 s queue)
MAX_REGISTRATIONS = 10_000
CALL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
Unregistered = Literal["refuse", "customer"]


@dataclass(frozen=True, slots=True)
class AudioSocketSettings:
    unregistered: Unregistered = "refuse"  # an unknown UUID: refuse it, or a call of its own
    leg_wait_s: float = 5.0  # after the last leg left, how long a registered leg still may come
    uuid_timeout_s: float = 5.0  # from the connection to the UUID message
    idle_timeout_s: float = 60.0  # no message at all on a leg for this long ends it
    registration_ttl_s: float = 3600.0  # a registration never connected is forgotten after this
    # host:port Asterisk should dial for the legs registered here (this node's own address: in
    # Kubernetes the pod's IP, since the REST call that registers a leg reaches one worker among
    # many); None: the listening address, when it is a real one
    advertise: str | None = None

    @classmethod
    def from_env(cls) -> AudioSocketSettings:
        """``ASSIST_AUDIOSOCKET_UNREGISTERED`` (refuse|customer), ``ASSIST_AUDIOSOCKET_LEG_WAIT_S``,
        ``ASSIST_AUDIOSOCKET_ADVERTISE`` (``host:port``)."""
        mode = os.environ.get("ASSIST_AUDIOSOCKET_UNREGISTERED", "refuse")
        if mode not in ("refuse", "customer"):
            raise ConfigError(f"ASSIST_AUDIOSOCKET_UNREGISTERED must be refuse or customer (got {mode!r})")
        wait = os.environ.get("ASSIST_AUDIOSOCKET_LEG_WAIT_S", "5")
        try:
            leg_wait_s = float(wait)
        except ValueError:
            raise ConfigError(
                f"ASSIST_AUDIOSOCKET_LEG_WAIT_S must be a number of seconds (got {wait!r})"
            ) from None
        if not 0 <= leg_wait_s <= 3600:
            raise ConfigError("ASSIST_AUDIOSOCKET_LEG_WAIT_S must be between 0 and 3600")
        advertise = os.environ.get("ASSIST_AUDIOSOCKET_ADVERTISE", "").strip() or None
        if advertise is not None:
            host, _, port = advertise.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"ASSIST_AUDIOSOCKET_ADVERTISE must be host:port (got {advertise!r})")
        return cls(unregistered=mode, leg_wait_s=leg_wait_s, advertise=advertise)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class LegRegistration:
    uuid: UUID
    call_id: str
    channel: Channel
    agent_id: str = ""
    lang: str = "en"
    queue: str = ""
    registered_at: float = 0.0


class LegRefusedError(Exception):
    """This connection cannot feed a call (unknown UUID, a channel already connected, ...)."""


class LegError(Exception):
    """The peer broke the protocol (``protocol_error``) or went away mid-message (``dropped``)."""

    def __init__(self, info: str, reason: str = "protocol_error") -> None:
        super().__init__(info)
        self.reason = reason


class RegistrationError(Exception):
    """A registration that conflicts with another one (answered with 409)."""


@dataclass(eq=False)
class TapCall:
    """One call fed by one or two legs."""

    call_id: str
    channels: tuple[Channel, ...]
    active: set[Channel] = field(default_factory=set)
    seen: set[Channel] = field(default_factory=set)
    uuids: set[UUID] = field(default_factory=set)
    live: LiveCall | None = None
    failed: bool = False
    ended: bool = False
    opening: asyncio.Task[None] | None = None
    end_timer: asyncio.Task[None] | None = None
    held: HeldAudio = field(default_factory=lambda: HeldAudio(PENDING_S))

    async def push(self, channel: Channel, pcm: Pcm16, rate: int) -> None:
        if self.failed:
            raise LegRefusedError(f"call {self.call_id} could not start")
        if self.live is None:
            self.held.hold(channel, pcm, rate)
            return
        await self.live.push(channel, pcm, rate)

    async def flush(self, live: LiveCall) -> None:
        """Audio held while the call started, one piece per channel (its call time lines up)."""
        try:
            await self.held.hand_over(live)
        finally:
            self.live = live  # set with no await since the last look at ``pending``


class AudioSocketRegistry:
    """Registrations and the calls their legs feed; one per service (its ``TapCalls``)."""

    def __init__(self, settings: AudioSocketSettings) -> None:
        self.settings = settings
        self.legs: dict[UUID, LegRegistration] = {}
        self.calls: dict[str, TapCall] = {}
        self.connect: str | None = None  # where Asterisk dials this node's legs (host:port)

    # -- registrations ---------------------------------------------------------------------------

    def register(self, calls: TapCalls, reg: LegRegistration) -> None:
        self._prune()
        if reg.uuid in self.legs:
            raise RegistrationError(f"UUID {reg.uuid} is already registered")
        if len(self.legs) >= MAX_REGISTRATIONS:
            raise RegistrationError(f"{MAX_REGISTRATIONS} legs are registered already")
        same_call = [r for r in self.legs.values() if r.call_id == reg.call_id]
        if any(r.channel == reg.channel for r in same_call):
            raise RegistrationError(f"call {reg.call_id} already has a registered {reg.channel} leg")
        if any(r.lang != reg.lang for r in same_call):
            raise RegistrationError(f"the legs of call {reg.call_id} must have the same lang")
        tap_call = self.calls.get(reg.call_id)
        if tap_call is None and calls.in_use(reg.call_id):
            raise RegistrationError(f"call id {reg.call_id} is already in use")
        if tap_call is not None and (tap_call.ended or reg.channel in tap_call.seen):
            raise RegistrationError(f"call {reg.call_id} already has its {reg.channel} leg")
        self.legs[reg.uuid] = reg

    def unregister(self, leg: UUID) -> bool:
        reg = self.legs.get(leg)
        call = self.calls.get(reg.call_id) if reg else None
        if reg is None or (call is not None and leg in call.uuids):
            return False  # unknown, or connected already (the call ends when its legs hang up)
        del self.legs[leg]
        return True

    def _prune(self) -> None:
        cutoff = time.monotonic() - self.settings.registration_ttl_s
        for leg, reg in list(self.legs.items()):
            if reg.registered_at < cutoff and reg.call_id not in self.calls:
                del self.legs[leg]

    # -- legs ----------------------------------------------------------------------------------

    def attach(self, calls: TapCalls, leg: UUID) -> tuple[TapCall, Channel]:
        """A leg has sent its UUID: the call it feeds (started on the first leg) and its channel."""
        reg = self.legs.get(leg)
        channels: tuple[Channel, ...] = ("agent", "customer")
        if reg is None:
            if self.settings.unregistered == "refuse":
                raise LegRefusedError("unregistered UUID (register it with POST /v1/taps/audiosocket/legs)")
            reg = LegRegistration(leg, f"audiosocket-{leg}", "customer", registered_at=time.monotonic())
            channels = ("customer",)
        call = self.calls.get(reg.call_id)
        if call is None:
            try:
                calls.check_open(reg.call_id)
            except (TooManyCallsError, InputError) as exc:  # no room, or the call id is in use
                raise LegRefusedError(str(exc)) from None
            call = self.calls[reg.call_id] = TapCall(reg.call_id, channels)
            meta = CallMeta(source="audiosocket", call_id=reg.call_id, lang=reg.lang, agent_id=reg.agent_id,
                            queue=reg.queue, extra=(("audiosocket_uuid", str(leg)),))  # fmt: skip
            call.opening = asyncio.create_task(
                self._open(calls, call, meta), name=f"audiosocket-open:{reg.call_id}"
            )
        elif call.ended or leg in call.uuids or reg.channel in call.active:
            raise LegRefusedError(f"call {reg.call_id} has no room for another {reg.channel} leg")
        if call.end_timer is not None:
            call.end_timer.cancel()
            call.end_timer = None
        call.uuids.add(leg)
        call.active.add(reg.channel)
        call.seen.add(reg.channel)
        return call, reg.channel

    async def _open(self, calls: TapCalls, call: TapCall, meta: CallMeta) -> None:
        try:
            live = await calls.open_call(meta, call.channels)
        except Exception as exc:
            log.error(
                "audiosocket: call %s could not start: %s", call.call_id, exc, extra={"call_id": call.call_id}
            )
            call.failed = True
            return
        try:
            await call.flush(live)
        except Exception:
            log.exception("audiosocket: the call failed", extra={"call_id": call.call_id})
            call.failed = True

    async def detach(self, call: TapCall, channel: Channel, reason: str) -> None:
        """A leg is gone: end the call when no leg is left and none is still expected."""
        call.active.discard(channel)
        if call.active or call.ended:
            return
        expected = {r.channel for r in self.legs.values() if r.call_id == call.call_id}
        if expected <= call.seen or self.settings.leg_wait_s <= 0:
            await self._end(call, reason)
        else:
            call.end_timer = asyncio.create_task(
                self._end_later(call, reason), name=f"audiosocket-wait:{call.call_id}"
            )

    async def _end_later(self, call: TapCall, reason: str) -> None:
        await asyncio.sleep(self.settings.leg_wait_s)
        call.end_timer = None
        if not call.active:
            await self._end(call, reason)

    async def _end(self, call: TapCall, reason: str) -> None:
        if call.ended:
            return
        call.ended = True
        try:
            if call.opening is not None:
                with contextlib.suppress(Exception):
                    await call.opening
            if call.live is not None and not call.live.ended:
                await call.live.end(reason)
        except Exception:
            log.exception("audiosocket: ending the call failed", extra={"call_id": call.call_id})
        finally:
            if call.held.dropped_s:
                log.warning("audiosocket: %.1f s of audio dropped while the call started", call.held.dropped_s,
                            extra={"call_id": call.call_id})  # fmt: skip
            self.calls.pop(call.call_id, None)
            for leg in [u for u, r in self.legs.items() if r.call_id == call.call_id]:
                del self.legs[leg]


_registries: weakref.WeakKeyDictionary[TapCalls, AudioSocketRegistry] = weakref.WeakKeyDictionary()


def registry_for(calls: TapCalls) -> AudioSocketRegistry | None:
    """The service's registry, once its AudioSocket server has started."""
    return _registries.get(calls)


# -- the TCP side ----------------------------------------------------------------------------------


async def read_message(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    """One message; None at a clean end of stream (a socket closed between messages)."""
    try:
        header = await reader.readexactly(3)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise LegError("truncated message header", "dropped") from None
    kind, length = header[0], int.from_bytes(header[1:3], "big")
    if length > MAX_PAYLOAD:
        raise LegError(f"payload of {length} bytes is over the {MAX_PAYLOAD} byte limit")
    try:
        payload = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError as exc:
        raise LegError(
            f"truncated message: {len(exc.partial)} of {length} payload bytes", "dropped"
        ) from None
    return kind, payload


async def _stream(reader: asyncio.StreamReader, call: TapCall, channel: Channel, idle_s: float) -> str:
    """A leg's messages after its UUID, until it ends; returns the leg's end reason."""
    while True:
        try:
            message = await asyncio.wait_for(read_message(reader), idle_s)
        except TimeoutError:
            raise LegError(f"nothing received for {idle_s:.0f} s", "dropped") from None
        if message is None:
            return "completed"  # the socket closed: a hangup, per the protocol
        kind, payload = message
        rate = AUDIO_RATES.get(kind)
        if rate is not None:
            if len(payload) % 2:
                raise LegError(f"audio payload of {len(payload)} bytes is not whole 16-bit samples")
            await call.push(channel, np.frombuffer(payload, "<i2").astype(np.int16), rate)
        elif kind == KIND_HANGUP:
            return "completed"
        elif kind == KIND_ERROR:
            log.warning("audiosocket: Asterisk reports error %s", payload[:1].hex() or "-",
                        extra={"call_id": call.call_id})  # fmt: skip
            return "error"
        elif kind == KIND_UUID:
            raise LegError("a second UUID message")
        elif kind != KIND_DTMF:  # digits are not logged: they may be card numbers
            log.info("audiosocket: message type 0x%02x ignored", kind, extra={"call_id": call.call_id})


async def handle_leg(
    calls: TapCalls, registry: AudioSocketRegistry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One TCP connection from Asterisk: UUID first, then audio until hangup."""
    attached: tuple[TapCall, Channel] | None = None
    reason = "dropped"
    try:
        first = await asyncio.wait_for(read_message(reader), registry.settings.uuid_timeout_s)
        if first is None or first[0] != KIND_UUID or len(first[1]) != 16:
            raise LegError("the first message must be the 16-byte UUID (type 0x01)")
        leg = UUID(bytes=first[1])
        attached = registry.attach(calls, leg)
        call, channel = attached
        log.info("audiosocket: %s leg connected", channel, extra={"call_id": call.call_id})
        reason = await _stream(reader, call, channel, registry.settings.idle_timeout_s)
    except LegRefusedError as exc:
        log.warning("audiosocket: leg refused: %s", exc)
    except LegError as exc:
        reason = exc.reason
        log.warning(
            "audiosocket: leg closed: %s", exc, extra={"call_id": attached[0].call_id if attached else None}
        )
    except TimeoutError:
        log.warning("audiosocket: no UUID within %.0f s", registry.settings.uuid_timeout_s)
    except (ConnectionError, OSError) as exc:
        log.warning("audiosocket: connection lost: %s", exc)
    except CallNotLiveError:
        log.warning("audiosocket: the call has ended (the service is stopping)")
    except Exception:
        log.exception("audiosocket: leg failed")
        reason = "error"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        if attached is not None:
            await registry.detach(attached[0], attached[1], reason)


async def start_audiosocket_server(
    calls: TapCalls, host: str, port: int, settings: AudioSocketSettings | None = None
) -> asyncio.Server:
    """Listen for Asterisk's AudioSocket connections (close the returned server to stop); the legs
    feed ``calls`` (the service's, which the REST side finds through ``get_calls``)."""
    registry = AudioSocketRegistry(settings or AudioSocketSettings.from_env())
    _registries[calls] = registry
    server = await asyncio.start_server(partial(handle_leg, calls, registry), host, port)
    if registry.settings.advertise:
        registry.connect = registry.settings.advertise
    elif host not in ("0.0.0.0", "::", ""):  # listening on every interface: no one address to give
        registry.connect = f"{host}:{server.sockets[0].getsockname()[1]}"
    log.info("audiosocket tap listening on %s:%d", host, port)
    return server


# -- the REST side ---------------------------------------------------------------------------------


class LegIn(BaseModel):
    uuid: UUID = Field(description="the UUID Asterisk will send first (AudioSocket's first argument)")
    call_id: str = Field(pattern=CALL_ID_PATTERN, description="legs with the same call_id are one call")
    channel: Channel
    agent_id: str = Field("", max_length=128)
    lang: Literal["en", "zh", "auto"] = "en"
    queue: str = Field("", max_length=128)


class LegOut(LegIn):
    connect: str | None = Field(
        None,
        description="host:port to give Asterisk's AudioSocket() for this leg: the node that registered it"
        " (ASSIST_AUDIOSOCKET_ADVERTISE; null when it listens on every interface and none is set)",
    )


@router.post("/audiosocket/legs", status_code=201, responses={404: {}, 409: {}})
async def register_leg(
    leg: LegIn,
    calls: Annotated[TapCalls, Depends(get_calls)],
    _: Annotated[Caller, Depends(allowed("taps.connect"))],
) -> LegOut:
    """Say which call and channel an AudioSocket UUID feeds, before Asterisk connects."""
    registry = registry_for(calls)
    if registry is None:
        raise HTTPException(404, "the AudioSocket tap is not enabled (set ASSIST_AUDIOSOCKET_PORT)")
    reg = LegRegistration(
        leg.uuid, leg.call_id, leg.channel, leg.agent_id, leg.lang, leg.queue, time.monotonic()
    )
    try:
        registry.register(calls, reg)
    except RegistrationError as exc:
        raise HTTPException(409, str(exc)) from None
    return LegOut(**leg.model_dump(), connect=registry.connect)


@router.delete("/audiosocket/legs/{leg}", status_code=204, responses={404: {}})
async def unregister_leg(
    leg: UUID,
    calls: Annotated[TapCalls, Depends(get_calls)],
    _: Annotated[Caller, Depends(allowed("taps.connect"))],
) -> Response:
    """Forget a registration whose leg has not connected."""
    registry = registry_for(calls)
    if registry is None or not registry.unregister(leg):
        raise HTTPException(404, f"no unconnected leg {leg}")
    return Response(status_code=204)
