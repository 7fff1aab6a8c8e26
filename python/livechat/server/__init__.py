"""The running service: the compiled edge, the chat services and the backends, wired together."""

from livechat.server.app import LiveChatServer

__all__ = ["LiveChatServer"]
