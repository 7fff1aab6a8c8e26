"""Peer broadcast servers the fan-out harness measures livechat against.

Each is the idiomatic one-room broadcast server of its library: every connection joins the room and
every message any client sends goes to every connection, as its own WebSocket message.
"""
