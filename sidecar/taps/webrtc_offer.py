"""WebRTC tap: reading an offer's audio m-lines and mapping them to the call's channels.

Channel mapping: one peer connection per call with one audio m-line per channel. ``channels``
maps a track id (the ``a=msid`` track) or an m-line's ``mid`` to ``agent`` | ``customer``; without
it, the first audio m-line is the agent and the second the customer (one m-line: an agent-only
call). An offer the tap cannot take is an ``OfferError`` (400).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc.sdp import SessionDescription

from sidecar.kernel.events import CHANNELS, Channel

SENDING = ("sendrecv", "sendonly")  # offered directions that carry the browser's audio to us
RECEIVING = ("sendrecv", "recvonly")  # offered directions that take audio from us


class OfferError(ValueError):
    """An offer the tap cannot take (400)."""


@dataclass(frozen=True, slots=True)
class OfferedAudio:
    mid: str
    track_id: str | None
    direction: str  # as the browser offered it


def offered_audio(sdp: str) -> list[OfferedAudio]:
    """The offer's audio m-lines (port 0, i.e. rejected ones, left out). ``OfferError`` for what
    is not an SDP offer, or carries media other than audio (a data channel is allowed)."""
    if not sdp.lstrip().startswith("v=0"):
        raise OfferError("not an SDP offer (SDP starts with v=0)")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # the parser raises whatever the text makes it raise
        raise OfferError(f"unreadable SDP: {type(exc).__name__}: {exc}") from None
    out = []
    for media in description.media:
        if media.kind not in ("audio", "application"):
            raise OfferError(f"the WebRTC tap takes audio only (m={media.kind} offered)")
        if media.kind == "audio" and media.port != 0:
            if not media.rtp.muxId:
                raise OfferError("every audio m-line needs an a=mid (unified plan SDP)")
            msid = (media.msid or "").split()
            out.append(OfferedAudio(media.rtp.muxId, msid[1] if len(msid) == 2 else None,
                                    media.direction or "sendrecv"))  # fmt: skip
    if not out:
        raise OfferError("the offer has no audio m-line")
    return out


def map_channels(audio: list[OfferedAudio], declared: dict[str, Channel] | None) -> dict[str, Channel]:
    """mid → channel for the call's offer: by ``declared`` (track id or mid), else m-line order."""
    if declared is None:
        if len(audio) > 2:
            raise OfferError(f"{len(audio)} audio m-lines: declare which is which in 'channels'")
        mapping: dict[str, Channel] = dict(zip((m.mid for m in audio), CHANNELS, strict=False))
    else:
        mapping = {}
        for key, channel in declared.items():
            match = [m for m in audio if key in (m.mid, m.track_id)]
            if not match:
                raise OfferError(f"channels: no audio m-line has the track id or mid {key!r}")
            mapping[match[0].mid] = channel
        unmapped = [m.mid for m in audio if m.mid not in mapping]
        if unmapped:
            raise OfferError(f"channels: the audio m-line(s) with mid {', '.join(unmapped)} are not mapped")
    if len(set(mapping.values())) != len(mapping):
        raise OfferError("channels: two audio m-lines are mapped to the same channel")
    for media in audio:
        if media.mid in mapping and media.direction not in SENDING:
            raise OfferError(f"the {mapping[media.mid]} m-line (mid {media.mid}) sends no audio "
                             f"({media.direction})")  # fmt: skip
    return mapping
