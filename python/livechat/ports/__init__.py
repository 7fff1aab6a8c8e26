"""Interfaces (``typing.Protocol``) between the services and the storage/broker backends.

Docstrings are the specification every backend keeps; ``tests/contract`` checks them per backend.
Nothing here imports a driver.
"""

from livechat.ports.broker import Broker, BrokerHandler
from livechat.ports.comment_log import CommentLog, LogAppend, LogEntry, LogRecord
from livechat.ports.errors import BackendError, BackendUnavailable, ClosedError, ConfigurationError
from livechat.ports.history import HistoryStore, StoredComment, Tombstone
from livechat.ports.log_follower import FollowerStats, LogFollower, LogHandler
from livechat.ports.meta import (
    GLOBAL_STREAM,
    Ban,
    FlaggedComment,
    FlagStatus,
    MetaStore,
    ModAction,
    ModActionKind,
    Pin,
    Reputation,
    Role,
    RoomModes,
    StreamInfo,
    UserInfo,
    UserReport,
)
from livechat.ports.registry import ConnectionRef, Registry

__all__ = [
    "GLOBAL_STREAM",
    "BackendError",
    "BackendUnavailable",
    "Ban",
    "Broker",
    "BrokerHandler",
    "ClosedError",
    "CommentLog",
    "ConfigurationError",
    "ConnectionRef",
    "FlagStatus",
    "FlaggedComment",
    "FollowerStats",
    "HistoryStore",
    "LogAppend",
    "LogEntry",
    "LogFollower",
    "LogHandler",
    "LogRecord",
    "MetaStore",
    "ModAction",
    "ModActionKind",
    "Pin",
    "Registry",
    "Reputation",
    "Role",
    "RoomModes",
    "StoredComment",
    "StreamInfo",
    "Tombstone",
    "UserInfo",
    "UserReport",
]
