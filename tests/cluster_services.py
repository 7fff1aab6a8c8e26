"""The real services the cluster-mode tests use, and a Toxiproxy client for fault tests.

``service_url(name)`` guarantees the service is up and answering when it returns: it runs
``scripts/services.sh up NAME`` (a no-op when the service already answers; otherwise install, start and wait)
at most once per process and name, and returns its URL::

    kafka          kafka://127.0.0.1:19092
    cassandra      cassandra://127.0.0.1:19042
    postgres       postgresql://postgres@127.0.0.1:19432/postgres
    redis          redis://127.0.0.1:19600
    redis-cluster  redis+cluster://127.0.0.1:19701
    toxiproxy      http://127.0.0.1:18474

A service that cannot start raises RuntimeError carrying the script's stderr tail, so the test FAILS (never
skips). The services are shared by every test process on the machine: never stop them from a test.

``Toxiproxy(api_url)`` drives Toxiproxy's HTTP API with urllib (no extra dependency).
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "services.sh"
# A cold first start downloads jars (~10 s) and builds Toxiproxy (~20 s); Cassandra alone needs up to 180 s.
UP_TIMEOUT_S = 600.0
STDERR_TAIL_LINES = 40

_urls: dict[str, str] = {}
# A failed start is not retried in this process: every later test fails at once.
_failures: dict[str, str] = {}
_lock = threading.Lock()


def service_url(name: str) -> str:
    """The URL of service ``name``, started first if it is not answering; RuntimeError when it cannot."""
    with _lock:
        if name in _failures:
            raise RuntimeError(_failures[name])
        url = _urls.get(name)
        if url is None:
            try:
                url = _urls[name] = _up(name)
            except RuntimeError as exc:
                _failures[name] = str(exc)
                raise
        return url


def _up(name: str) -> str:
    try:
        done = subprocess.run(
            [str(SCRIPT), "up", name],
            capture_output=True,
            text=True,
            timeout=UP_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"services.sh up {name}: no answer after {UP_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-STDERR_TAIL_LINES:])
        raise RuntimeError(f"services.sh up {name} failed (exit {done.returncode}):\n{tail}")
    for line in done.stdout.splitlines():
        got, _, url = line.partition(" ")
        if got == name and url:
            return url
    raise RuntimeError(f"services.sh up {name} printed no URL:\n{done.stdout}{done.stderr}")


class ToxiproxyError(RuntimeError):
    """Toxiproxy's API refused a request (status and body in the message)."""


class Toxiproxy:
    """A client of Toxiproxy's HTTP API (https://github.com/Shopify/toxiproxy#http-api).

    Proxies and toxics live in the shared Toxiproxy server: give them names unique to the test and delete them
    (``delete_proxy``) when done; ``reset()`` affects every test using the server.
    """

    def __init__(self, api_url: str, timeout: float = 5.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.api_url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ToxiproxyError(f"{method} {path}: {exc.code} {detail}") from exc
        return json.loads(raw) if raw else None

    def version(self) -> str:
        request = urllib.request.Request(f"{self.api_url}/version")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return str(response.read().decode().strip())

    def proxy(self, name: str, listen: str, upstream: str) -> dict[str, Any]:
        """Create (or replace) proxy ``name`` from ``listen`` ("host:port"; port 0 = any free port) to
        ``upstream``. Returns the proxy as Toxiproxy reports it: "listen" is the address actually bound."""
        try:
            self.delete_proxy(name)
        except ToxiproxyError:
            pass
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": True}
        result: dict[str, Any] = self._call("POST", "/proxies", body)
        return result

    def delete_proxy(self, name: str) -> None:
        self._call("DELETE", f"/proxies/{name}")

    def add_toxic(
        self,
        proxy: str,
        type: str,
        stream: str = "downstream",
        attributes: dict[str, Any] | None = None,
        name: str | None = None,
        toxicity: float = 1.0,
    ) -> dict[str, Any]:
        """Add a toxic (latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data) to ``proxy``.
        ``stream`` is "downstream" (server to client) or "upstream"; the name defaults to
        "<type>_<stream>"."""
        body = {
            "name": name or f"{type}_{stream}",
            "type": type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes or {},
        }
        result: dict[str, Any] = self._call("POST", f"/proxies/{proxy}/toxics", body)
        return result

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        """Disabled = the listener is closed and every connection through it is dropped."""
        self._call("POST", f"/proxies/{proxy}", {"enabled": enabled})

    def proxies(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/proxies")
        return result

    def reset(self) -> None:
        """Enable every proxy and remove every toxic (of every test using this server)."""
        self._call("POST", "/reset")
