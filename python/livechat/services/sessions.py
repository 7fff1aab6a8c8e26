"""Who is on which connection, in which streams, with which role; and how to reach a user."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from livechat.auth import ROLE_RANK, Principal
from livechat.ports.meta import Role


@dataclass(slots=True)
class Member:
    """A connection's membership of one stream."""

    role: Role
    rank: int
    # Wall-clock seconds the user started following the stream's owner (None: not a follower).
    follow_since: float | None


@dataclass(slots=True)
class Session:
    conn: int
    principal: Principal
    streams: dict[str, Member] = field(default_factory=dict)
    # Moderation strikes of the user, read once per connection and kept current.
    strikes: int = 0
    strikes_loaded: bool = False
    # The client's IP address (the edge's peer, or what a trusted proxy said: edge.trusted_proxies);
    # None when unknown. Anonymous connections from one address share its budgets.
    address: str | None = None


def member_for(role: Role, follow_since: float | None) -> Member:
    return Member(role, ROLE_RANK[role], follow_since)


def handle_of(text: str) -> str:
    """How a name is written in an @mention: lower-case, no spaces."""
    return "".join(text.split()).lower()


#: Signed-in users whose latest token claims are remembered after they disconnect (then all are
#: forgotten at once: a bound on memory, ~200 bytes each).
PRINCIPALS_REMEMBERED: Final = 100_000


class SessionTable:
    """Sessions by connection, authenticated users' connections, and @handle -> user ids."""

    __slots__ = ("_by_conn", "_by_handle", "_by_user", "_last_seen")

    def __init__(self) -> None:
        self._by_conn: dict[int, Session] = {}
        self._by_user: dict[str, set[int]] = {}
        self._by_handle: dict[str, set[str]] = {}
        # user id -> the principal of their latest token seen here (role rules on offline users).
        self._last_seen: dict[str, Principal] = {}

    def __len__(self) -> int:
        return len(self._by_conn)

    def get(self, conn_id: int) -> Session | None:
        return self._by_conn.get(conn_id)

    def add(self, session: Session) -> None:
        self._by_conn[session.conn] = session
        user = session.principal.user_id
        if user is None:
            return
        self._by_user.setdefault(user, set()).add(session.conn)
        if len(self._last_seen) >= PRINCIPALS_REMEMBERED and user not in self._last_seen:
            self._last_seen.clear()
        self._last_seen[user] = session.principal
        for handle in {handle_of(user), handle_of(session.principal.name)}:
            self._by_handle.setdefault(handle, set()).add(user)

    def remove(self, conn_id: int) -> Session | None:
        session = self._by_conn.pop(conn_id, None)
        if session is None or session.principal.user_id is None:
            return session
        user = session.principal.user_id
        conns = self._by_user.get(user)
        if conns is not None:
            conns.discard(conn_id)
            if not conns:
                del self._by_user[user]
                for handle in {handle_of(user), handle_of(session.principal.name)}:
                    users = self._by_handle.get(handle)
                    if users is not None:
                        users.discard(user)
                        if not users:
                            del self._by_handle[handle]
        return session

    def replace_principal(self, session: Session, principal: Principal) -> None:
        """``session`` runs on a refreshed token of the same user (its name may have changed)."""
        self.remove(session.conn)
        session.principal = principal
        self.add(session)

    def user_sessions(self, user_id: str) -> list[Session]:
        return [self._by_conn[conn] for conn in self._by_user.get(user_id, ())]

    def known_principals(self, user_id: str) -> list[Principal]:
        """What the user's tokens claim: their connections' principals here, and the latest one
        this edge saw (also once they have disconnected)."""
        principals = [session.principal for session in self.user_sessions(user_id)]
        last = self._last_seen.get(user_id)
        if last is not None:
            principals.append(last)
        return principals

    def conns_in(self, user_id: str, stream: str) -> list[int]:
        """This edge's connections of ``user_id`` that joined ``stream``."""
        conns = self._by_user.get(user_id)
        if not conns:
            return []
        by_conn = self._by_conn
        return [conn for conn in conns if stream in by_conn[conn].streams]

    def mentioned_conns(self, handles: list[str], stream: str) -> list[int]:
        """Connections in ``stream`` of the users these @handles name."""
        out: list[int] = []
        for handle in handles:
            for user in self._by_handle.get(handle, ()):
                out.extend(self.conns_in(user, stream))
        return out
