"""Structured logs: one JSON object per line (the default), or one plain line per event.

A JSON line holds ``ts`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``msg`` (the
formatted message), every ``extra={...}`` field given at the call site (``event`` names what
happened: ``serving``, ``draining``, ``stopped``…), and ``exc`` with the traceback when there is
one. Values that are not JSON types are written as their ``str()``. Log calls never raise.

Plain lines read ``2026-11-21T06:00:00.123Z INFO livechat.server serving on … event=serving
port=8765``: the message, then the extra fields as ``key=value``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final, Literal, TextIO

LogFormat = Literal["json", "plain"]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"}
)


def _timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record, in the order they were given."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record.created), record.levelname, record.name, record.getMessage()]
        parts += [f"{k}={v}" for k, v in extra_fields(record).items()]
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(fmt: LogFormat = "json", level: str = "info", stream: TextIO | None = None) -> logging.Handler:
    """Send every ``livechat`` (and library) log record to ``stream`` (stderr) in ``fmt``.

    Replaces the root logger's handlers, so calling it again switches format; returns the handler.
    """
    if fmt not in ("json", "plain"):
        raise ValueError(f"log format {fmt!r} is not 'json' or 'plain'")
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"log level {level!r} is not debug, info, warning or error")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler
