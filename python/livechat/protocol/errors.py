"""``ProtocolError``: a client message broke a documented rule (docs/protocol.md §6)."""

from __future__ import annotations

from typing import Any, Final

from livechat.protocol.codes import ErrorCode
from livechat.protocol.encode import encode_error

#: ``unavailable`` always tells the client when to retry (docs/protocol.md §6): this, unless the
#: raiser knows better (a backend's own back-off).
UNAVAILABLE_RETRY_MS: Final = 1000


class ProtocolError(Exception):
    """A client message broke a documented rule. Reply with ``encode_error`` and keep the connection."""

    def __init__(self, code: ErrorCode, message: str, rid: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.rid = rid
        if code is ErrorCode.UNAVAILABLE and "retry_ms" not in extra:
            extra["retry_ms"] = UNAVAILABLE_RETRY_MS
        self.extra = extra

    def encode(self) -> bytes:
        return encode_error(self.code, self.message, self.rid, **self.extra)
