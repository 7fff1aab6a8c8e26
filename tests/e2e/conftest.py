"""End-to-end fixtures: a real `livechat serve` (embedded: SQLite, no services) on a port in
18500-18999, tokens minted with the secret it writes to its data directory, and where artifacts go."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.serve_process import ServeProcess

PORTS = range(18500, 19000)
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port of this suite's range that nothing listens on right now."""
    candidates = list(PORTS)
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18500-18999")


def start_serve(data_dir: Path) -> ServeProcess:
    # --admin-port 0: several servers (and other suites) must not fight over the admin port.
    return ServeProcess(data_dir, "--admin-port", "0", port=free_port()).start()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    proc = start_serve(tmp_path / "data")
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()


@pytest.fixture
def artifacts() -> Path:
    """artifacts/e2e in the repository (gitignored): screenshots and load-test reports stay here."""
    path = REPO / "artifacts" / "e2e"
    path.mkdir(parents=True, exist_ok=True)
    return path
