"""Exceptions raised by ``LiveChatClient`` requests."""

from __future__ import annotations

from typing import Any


class LiveChatError(Exception):
    """Base of every client error."""


class ServerError(LiveChatError):
    """The server refused a request with an ``err`` reply (docs/protocol.md §6)."""

    def __init__(self, code: str, message: str, fields: dict[str, Any]) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields = fields

    @property
    def retry_ms(self) -> int | None:
        """For rate_limited / slow_mode / stream_busy / unavailable: when a retry may succeed."""
        value = self.fields.get("retry_ms")
        return value if type(value) is int else None


class ConnectionLost(LiveChatError):
    """The connection dropped after the request was sent: it may or may not have taken effect.
    (Posts never raise this: they are resent with the same cmid once reconnected.)"""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection lost (close {code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class AuthRejected(LiveChatError):
    """The server refused the token (close 4001 / 4002, or 4003 with no token provider to refresh
    it). The client does not reconnect."""

    def __init__(self, close_code: int, error_code: str | None, message: str) -> None:
        super().__init__(f"token refused: {error_code or close_code}: {message}")
        self.close_code = close_code
        self.error_code = error_code


class ClientClosed(LiveChatError):
    """The client was closed (or gave up for good) before the request completed."""
