"""Structured JSON logs, one line per event, each with the request id.

The request id comes from a sane incoming `X-Request-ID` (a load balancer's) or is made
here; it is returned as `X-Request-ID` and quoted in error bodies.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, g, request

_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        try:
            rid = g.get("request_id")
        except RuntimeError:  # outside a request
            rid = None
        if rid:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.handlers = [handler]
    root.setLevel(str(level).upper())  # LOG_LEVEL=info works too (logging wants INFO)


def init_request_logging(app: Flask) -> None:
    access = logging.getLogger("server.access")

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _SANE_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        if not access.isEnabledFor(logging.INFO):  # LOG_LEVEL=WARNING: skip building it
            return response
        actor = g.get("actor")
        access.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1e3, 2),
                "ip": request.remote_addr,
                "user_id": getattr(actor, "user_id", None),
            },
        )
        return response
