"""``ProtocolError``: a client message broke a documented rule (docs/protocol.md §6)."""

from __future__ import annotations

from typing import Any

from livechat.protocol.codes import ErrorCode
from livechat.protocol.encode import encode_error


class ProtocolError(Exception):
    """A client message broke a documented rule. Reply with ``encode_error`` and keep the connection."""

    def __init__(self, code: ErrorCode, message: str, rid: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.rid = rid
        self.extra = extra

    def encode(self) -> bytes:
        return encode_error(self.code, self.message, self.rid, **self.extra)
