"""Structured logs: one JSON object per line with the call's extra fields, or plain lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from livechat.logs import configure


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines(restore_root: None) -> None:
    out = io.StringIO()
    configure("json", "info", out)
    log = logging.getLogger("livechat.test")
    log.info(
        "serving on %s:%d", "127.0.0.1", 8765, extra={"event": "serving", "port": 8765, "path": object()}
    )
    log.debug("not shown at info")
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("handling failed", extra={"event": "failure"})
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # one line per event, even with a multi-line traceback
    first, second = (json.loads(line) for line in lines)
    assert first["msg"] == "serving on 127.0.0.1:8765" and first["level"] == "info"
    assert first["logger"] == "livechat.test" and first["event"] == "serving" and first["port"] == 8765
    assert first["path"].startswith("<object object")  # not JSON: written as str()
    assert first["ts"].endswith("Z") and len(first["ts"]) == len("2026-11-21T06:00:00.123Z")
    assert second["level"] == "error" and second["event"] == "failure"
    assert "ValueError: boom" in second["exc"] and "Traceback" in second["exc"]


def test_plain_lines_and_bad_settings(restore_root: None) -> None:
    out = io.StringIO()
    configure("plain", "debug", out)
    logging.getLogger("livechat.test").debug("draining", extra={"event": "draining", "connections": 3})
    line = out.getvalue().strip()
    assert line.endswith("DEBUG livechat.test draining event=draining connections=3")
    configure("json", "warning", out)  # switching replaces the handler: no duplicate lines
    assert len(logging.getLogger().handlers) == 1
    with pytest.raises(ValueError, match="log format 'xml'"):
        configure("xml", "info")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log level 'loud'"):
        configure("json", "loud")
