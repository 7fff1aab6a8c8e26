"""A typed asyncio client of the livechat protocol, with reconnect and recovery (``LiveChatClient``).

The web page's JavaScript twin is ``livechat/web/livechat-client.js``.
"""

from livechat.client.backoff import Backoff
from livechat.client.client import LiveChatClient, token_subject
from livechat.client.errors import AuthRejected, ClientClosed, ConnectionLost, LiveChatError, ServerError
from livechat.client.events import (
    Ack,
    Banned,
    Comment,
    Counts,
    Deleted,
    Disconnected,
    Event,
    Gap,
    Highlighted,
    HistoryPage,
    Modes,
    ModesChanged,
    Notice,
    Pinned,
    Purged,
    Reconnected,
    Reconnecting,
    ServerErrorEvent,
    Snapshot,
    StateChanged,
    Tier,
    TopPage,
    Unbanned,
    UnknownEvent,
)
from livechat.client.moderation import FlaggedItem, ModerationQueue, ReportItem
from livechat.client.streams import StreamView

__all__ = [
    "Ack",
    "AuthRejected",
    "Backoff",
    "Banned",
    "ClientClosed",
    "Comment",
    "ConnectionLost",
    "Counts",
    "Deleted",
    "Disconnected",
    "Event",
    "FlaggedItem",
    "Gap",
    "Highlighted",
    "HistoryPage",
    "LiveChatClient",
    "LiveChatError",
    "ModerationQueue",
    "Modes",
    "ModesChanged",
    "Notice",
    "Pinned",
    "Purged",
    "Reconnected",
    "Reconnecting",
    "ReportItem",
    "ServerError",
    "ServerErrorEvent",
    "Snapshot",
    "StateChanged",
    "StreamView",
    "Tier",
    "TopPage",
    "Unbanned",
    "UnknownEvent",
    "token_subject",
]
