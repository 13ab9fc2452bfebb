"""Rule packs: read the live pack's files, validate edits (every problem with its file and line),
publish them. Publishing writes the files into the live pack directory only after the whole
pack with the edits has loaded; the coach then reloads it and running calls use it from their
next utterance. A refused pack changes nothing."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from coach.rules import RulePackError, RuleSet, fingerprint, load_rules
from sidecar.service.auth import Principal
from sidecar.service.context import AppContext, authorize, get_ctx
from sidecar.service.limits import StrictJsonRoute

router = APIRouter(prefix="/v1/rules", tags=["rules"], route_class=StrictJsonRoute)
Ctx = Annotated[AppContext, Depends(get_ctx)]
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}\.ya?ml")  # fullmatch: no trailing newline
MAX_FILE_BYTES = 1_000_000
_publish_lock = threading.Lock()


class RuleFiles(BaseModel):
    files: dict[str, str | None] = Field(
        description="file name -> YAML text (null deletes the file)", min_length=1, max_length=200
    )


class Problem(BaseModel):
    file: str
    line: int
    message: str


class Validation(BaseModel):
    ok: bool
    problems: list[Problem]
    summary: dict[str, int]


class Published(BaseModel):
    version: str
    summary: dict[str, int]


def _summary(rules: RuleSet) -> dict[str, int]:
    return {"rules": len(rules.rules), "intents": len(rules.intents), "disclosures": len(rules.disclosures)}


def _problem(text: str) -> dict[str, Any]:
    m = re.match(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<msg>.*)$", text, re.S)
    if m:
        return {"file": m["file"], "line": int(m["line"]), "message": m["msg"]}
    return {"file": "", "line": 0, "message": text}


def _check_names(files: dict[str, str | None]) -> None:
    for name, text in files.items():
        if not FILE_NAME.fullmatch(name):
            raise HTTPException(422, f"{name[:120]!r}: a rule file is a bare name ending in .yaml")
        if text is not None and len(text.encode()) > MAX_FILE_BYTES:
            raise HTTPException(413, f"{name}: larger than {MAX_FILE_BYTES} bytes")


def _staged(live: Path, files: dict[str, str | None], into: Path) -> Path:
    """A copy of the live pack with the edits applied."""
    staged = into / "pack"
    shutil.copytree(live, staged)
    for name, text in files.items():
        target = staged / name
        if text is None:
            target.unlink(missing_ok=True)
        else:
            target.write_text(text, encoding="utf-8")
    return staged


def _validate(live: Path, files: dict[str, str | None]) -> tuple[RuleSet | None, list[dict[str, Any]]]:
    with tempfile.TemporaryDirectory(prefix="rules-") as tmp:
        try:
            return load_rules(_staged(live, files, Path(tmp))), []
        except RulePackError as exc:
            return None, [_problem(p) for p in exc.problems]


@router.get("")
def get_rules(ctx: Ctx, principal: Annotated[Principal, Depends(authorize("rules.read"))]) -> dict[str, Any]:
    live = ctx.services.coach.rules_dir
    files = [
        {"name": p.name, "text": p.read_text(encoding="utf-8"), "size": p.stat().st_size}
        for p in sorted(live.glob("*.yaml"))
    ]
    return {
        "version": fingerprint(live),
        "files": files,
        "summary": _summary(ctx.services.coach.compiled.source),
        "last_error": ctx.services.coach.last_error.problems if ctx.services.coach.last_error else [],
    }


@router.post("/validate", response_model=Validation)
def validate(
    body: RuleFiles, ctx: Ctx, principal: Annotated[Principal, Depends(authorize("rules.read"))]
) -> dict[str, Any]:
    _check_names(body.files)
    rules, problems = _validate(ctx.services.coach.rules_dir, body.files)
    return {"ok": rules is not None, "problems": problems, "summary": _summary(rules) if rules else {}}


@router.post("/publish", response_model=Published, responses={422: {}})
def publish(
    body: RuleFiles, ctx: Ctx, principal: Annotated[Principal, Depends(authorize("rules.write"))]
) -> dict[str, Any]:
    _check_names(body.files)
    coach = ctx.services.coach
    live = coach.rules_dir
    with _publish_lock:
        rules, problems = _validate(live, body.files)
        if rules is None:
            raise HTTPException(422, {"problems": problems})
        for name, text in body.files.items():
            target = live / name
            if text is None:
                target.unlink(missing_ok=True)
                continue
            tmp = target.with_name(f".{name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(target)  # each file atomically; the pack was validated as a whole
        coach.reload_if_changed()
    if coach.last_error is not None:  # e.g. a file changed on disk at the same moment
        raise HTTPException(422, {"problems": [_problem(p) for p in coach.last_error.problems]})
    return {"version": coach.compiled.source.fingerprint, "summary": _summary(coach.compiled.source)}
