"""Structured logs: one JSON object per line on stderr.

Only the message and a fixed set of extra fields are written: no transcript text, token or query
string reaches a log line through this formatter, whatever a caller passes in ``extra``.
"""

from __future__ import annotations

import json
import logging
import sys
import time

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
