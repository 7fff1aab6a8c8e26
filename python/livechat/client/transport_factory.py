"""Picks a ``Transport`` implementation by name; imported by the client, never by a transport."""

from __future__ import annotations

from livechat.client.transport import Connector, TransportName


def connector(name: TransportName) -> Connector:
    """The connect function of ``name``; its library is imported only when it is chosen."""
    if name == "websockets":
        from livechat.client.transport_websockets import connect_websockets

        return connect_websockets
    if name == "picows":
        from livechat.client.transport_picows import connect_picows

        return connect_picows
    raise ValueError(f"unknown transport {name!r}: use 'websockets' or 'picows'")
