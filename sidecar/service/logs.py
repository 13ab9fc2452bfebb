"""Structured logs: one JSON object per line on stderr.

Only the message and a fixed set of extra fields are written: no transcript text, token or query
string reaches a log line through this formatter, whatever a caller passes in ``extra``.

``install_scrubber`` goes further, for every logger and every handler (uvicorn's WebSocket lines
carry the path with its query string, e.g. ``?access_token=...``; websockets and aiortc log
requests and headers at debug level): each log record is cleaned as it is made, before any
handler or filter sees it. Query strings become ``?[query removed]``; ``token=``/``password=``
values, ``X-API-KEY``/``Cookie`` headers and ``Bearer``/``Basic`` credentials become ``[redacted]``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any

_QUERY = re.compile(r"(?<=[^\s?])\?[^\s\"'#?]*=[^\s\"'#]*")  # a path's query string (one with key=value)
_SECRET = re.compile(
    r"(?i)\b((?:access_|api_|auth_|refresh_)?token|password|passwd|secret|api[_-]?key|cookie)(\"?'?\s*[:=]\s*\"?'?)[^\s&\"',;}]+"
)
_CREDENTIALS = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}")


def scrub(text: str) -> str:
    """``text`` without query strings, token or password values, or bearer/basic credentials."""
    if "?" in text:
        text = _QUERY.sub("?[query removed]", text)
    text = _SECRET.sub(r"\1\2[redacted]", text)
    return _CREDENTIALS.sub(r"\1 [redacted]", text)


def _scrub_arg(value: Any) -> Any:
    return scrub(value) if isinstance(value, str) else value


def scrub_record(record: logging.LogRecord) -> None:
    """Clean a record in place: its message, its arguments, and its traceback's text."""
    if isinstance(record.msg, str):
        record.msg = scrub(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_scrub_arg(a) for a in record.args)
    elif isinstance(record.args, Mapping):
        record.args = {k: _scrub_arg(v) for k, v in record.args.items()}
    try:
        message = record.getMessage()
    except Exception:  # a record whose arguments do not fit its format: logging reports it
        return
    clean = scrub(message)
    if clean != message:  # an argument that is not a string printed a secret: keep the clean text
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))


_factory_installed = False


def install_scrubber() -> None:
    """Clean every log record as it is made, whatever logger makes it (idempotent)."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        scrub_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


FIELDS = ("method", "route", "status", "ms", "bus", "call_id", "role", "count")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            if name in record.__dict__:
                out[name] = record.__dict__[name]
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__
        return json.dumps(out, ensure_ascii=False)


def configure(level: int = logging.INFO) -> None:
    install_scrubber()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.Formatter.converter = time.gmtime
    logging.getLogger("uvicorn.access").disabled = True  # ours replaces it (it prints query strings)
    for chatty in ("faiss", "sentence_transformers", "httpx", "jieba"):
        # sentence-transformers also draws progress bars when its logger is at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
