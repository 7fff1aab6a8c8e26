"""The links from a cluster's edges and workers to each service, through Toxiproxy, and the faults
that can be put on them.

One proxy per service (``kafka``, ``redis``, ``cassandra``, ``postgres``) carries every edge's and
the persist worker's connections to it, so a fault on a link is that service failing as the whole
cluster sees it. The shared services themselves are never stopped or signalled (other suites use
them): ``down`` (the proxy disabled: every connection dropped, new ones refused) stands for a
killed service, ``timeout`` (replies black-holed, connections left open) for a stopped one.

Kafka needs a fixed address: clients connect to whatever broker address the metadata names, so the
broker's TOXI listener (scripts/services/conf/kafka-server.properties: listens on 19094, advertises
127.0.0.1:19095) is reached through a proxy that must listen on exactly 127.0.0.1:19095. Hence one
fault run at a time per machine.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any, Final

from tests.cluster_services import Toxiproxy, service_url

LINKS: Final = ("kafka", "redis", "cassandra", "postgres")
TOXICS: Final = ("latency", "reset_peer", "timeout", "down")

KAFKA_TOXI_LISTENER: Final = "127.0.0.1:19094"
KAFKA_PROXY_LISTEN: Final = "127.0.0.1:19095"

#: Toxic settings: a slow link (half a second each way, well under every client timeout but 100x a
#: loopback round trip), a link whose connections are reset after half a second each, a link whose
#: replies vanish (the connection stays open: only client timeouts notice).
LATENCY_MS: Final = 500
LATENCY_JITTER_MS: Final = 100
RESET_AFTER_MS: Final = 500


def _upstreams() -> dict[str, str]:
    return {
        "kafka": KAFKA_TOXI_LISTENER,
        "redis": service_url("redis").removeprefix("redis://"),
        "cassandra": service_url("cassandra").removeprefix("cassandra://"),
        "postgres": service_url("postgres").removeprefix("postgresql://").split("/")[0].partition("@")[2],
    }


def _toxi_listener_up() -> bool:
    try:
        socket.create_connection(KAFKA_TOXI_LISTENER.split(":"), timeout=1).close()  # type: ignore[arg-type]
    except OSError:
        return False
    return True


class Links:
    """The proxies of one fault run: ``via`` maps each service to its proxy's address (give it to
    ``Cluster(via=...)``); ``fault(link, toxic)`` / ``heal(link)``."""

    def __init__(self) -> None:
        self.api = Toxiproxy(service_url("toxiproxy"))
        service_url("kafka")
        if not _toxi_listener_up():
            raise RuntimeError(
                f"Kafka has no TOXI listener on {KAFKA_TOXI_LISTENER}: it was started from an older "
                "kafka-server.properties; restart it "
                "(scripts/services.sh down kafka && scripts/services.sh up kafka)"
            )
        self.tag = uuid.uuid4().hex[:8]
        self.names = {
            link: f"lc-faults-{link}" if link == "kafka" else f"lc-faults-{link}-{self.tag}" for link in LINKS
        }
        self.via: dict[str, str] = {}
        self.active: dict[str, str] = {}

    def create(self) -> dict[str, str]:
        for link, upstream in _upstreams().items():
            listen = KAFKA_PROXY_LISTEN if link == "kafka" else "127.0.0.1:0"
            made: dict[str, Any] = self.api.proxy(self.names[link], listen, upstream)
            self.via[link] = str(made["listen"])
        return self.via

    def fault(self, link: str, toxic: str) -> None:
        name = self.names[link]
        if toxic == "down":
            self.api.set_enabled(name, False)
        elif toxic == "latency":
            for stream in ("upstream", "downstream"):
                attributes = {"latency": LATENCY_MS // 2, "jitter": LATENCY_JITTER_MS // 2}
                self.api.add_toxic(name, "latency", stream, attributes)
        elif toxic == "reset_peer":
            self.api.add_toxic(name, "reset_peer", "upstream", {"timeout": RESET_AFTER_MS})
        elif toxic == "timeout":
            # Replies vanish, requests still arrive: writes may happen whose answers are lost.
            self.api.add_toxic(name, "timeout", "downstream", {"timeout": 0})
        else:
            raise ValueError(f"unknown toxic {toxic!r}")
        self.active[link] = toxic

    def heal(self, link: str) -> None:
        toxic = self.active.pop(link, None)
        name = self.names[link]
        if toxic is None:
            return
        if toxic == "down":
            self.api.set_enabled(name, True)
        elif toxic == "latency":
            for stream in ("upstream", "downstream"):
                self.api.remove_toxic(name, f"latency_{stream}")
        elif toxic == "reset_peer":
            self.api.remove_toxic(name, "reset_peer_upstream")
        elif toxic == "timeout":
            self.api.remove_toxic(name, "timeout_downstream")

    def heal_all(self) -> None:
        for link in list(self.active):
            self.heal(link)

    def delete(self) -> None:
        for name in self.names.values():
            try:
                self.api.delete_proxy(name)
            except Exception:  # already gone (a restarted Toxiproxy has no proxies)
                pass
