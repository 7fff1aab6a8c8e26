"""Free TCP ports for tests and benchmarks, on a machine several suites share at once.

A suite that starts servers takes its ports from a range of its own (``tests/service``
17000-17999, ``tests/ops`` 18000-18999, ``bench.fanout`` 19100-19999…), picked at random within it
so parallel runs rarely pick the same one. A port is free when the call returns: nothing stops
another process from taking it before the caller binds it, so a server that fails to bind should be
retried on another port rather than reported as a bug.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Container


def free_port(ports: range | None = None, host: str = "127.0.0.1", exclude: Container[int] = ()) -> int:
    """A port of ``ports`` that nothing is bound to on ``host`` right now, chosen at random and not
    in ``exclude``; with ``ports=None``, one the kernel picks (an ephemeral port). RuntimeError
    when every port of the range is taken."""
    if ports is None:
        with socket.socket() as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
            return port
    candidates = [p for p in ports if p not in exclude]
    random.shuffle(candidates)
    for candidate in candidates:
        with socket.socket() as s:
            try:
                s.bind((host, candidate))
            except OSError:
                continue
            return candidate
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")
