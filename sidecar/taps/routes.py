"""The taps the service mounts (one line per tap module)."""

from __future__ import annotations

from fastapi import APIRouter

from sidecar.taps import audiohook, audiosocket, chat, l16, livekit, twilio, webrtc

routers: list[APIRouter] = [
    twilio.router,
    l16.router,
    webrtc.router,
    audiohook.router,
    audiosocket.router,
    livekit.router,
    chat.router,
]
