"""A stored call's recording, for playback on the review page:
``GET /v1/history/calls/{id}/recording`` (``?access_token=`` works too: an ``<audio>`` element
cannot send headers).

Only a WAV file inside the service's recordings directory is served (the calls it played from
there, and ``assist qa run`` calls scored from there); any other reference (a path elsewhere, a
transcript, a file since removed) is 404, so a stored reference can never read another file.
Who may: as for the call's record (an agent only their own calls). Range requests work (seeking).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse

from sidecar.service.auth import Principal
from sidecar.service.context import AppContext, authorize_stream, get_ctx
from sidecar.service.routes_history import CallId, History

router = APIRouter(prefix="/v1/history", tags=["history"])
AUDIO_SUFFIXES = {".wav": "audio/wav"}


def playable(recordings_dir: Path | None, recording_ref: str | None) -> Path | None:
    """The file a stored call's recording reference names, when it is a WAV inside the recordings
    directory (after resolving links and ``..``); else None. Blocking (stat)."""
    if recordings_dir is None or not recording_ref:
        return None
    root = recordings_dir.resolve()
    ref = Path(recording_ref)
    path = (ref if ref.is_absolute() else root / ref).resolve()
    if not path.is_relative_to(root) or path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
        return None
    return path


@router.get(
    "/calls/{call_id}/recording",
    response_class=FileResponse,
    responses={200: {"content": {"audio/wav": {}}}, 403: {}, 404: {}},
)
async def recording(
    call_id: CallId,
    history: History,
    ctx: Annotated[AppContext, Depends(get_ctx)],
    principal: Annotated[Principal, Depends(authorize_stream("history.read"))],
) -> FileResponse:
    def find() -> Path:
        stored = history.store.get(call_id)
        if stored is None:
            raise HTTPException(404, f"no stored call {call_id}")
        if not principal.may("history.read_all") and stored.summary.agent_id != principal.name:
            raise HTTPException(403, "this call is assigned to another agent")
        path = playable(ctx.live.recordings_dir, stored.summary.recording_ref)
        if path is None:
            raise HTTPException(404, "this call has no recording the service can play")
        return path

    path = await asyncio.to_thread(find)
    return FileResponse(path, media_type=AUDIO_SUFFIXES[path.suffix.lower()])
