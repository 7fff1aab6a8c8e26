"""An embedded edge imports no cluster driver: ``livechat serve`` must start from a plain install
(no ``cluster`` extra), so a driver is imported only when its URL scheme is used
(``livechat.backends``). Checked in a fresh interpreter, where nothing else imported them first."""

from __future__ import annotations

import subprocess
import sys

DRIVERS = ("aiokafka", "cassandra", "asyncpg", "redis")


def drivers_imported_by(module: str) -> list[str]:
    code = f"import sys, {module}; print(','.join(d for d in {DRIVERS!r} if d in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [name for name in done.stdout.strip().split(",") if name]


def test_the_log_to_history_rules_import_no_driver() -> None:
    assert drivers_imported_by("livechat.workers.apply") == []


def test_the_embedded_server_imports_no_driver() -> None:
    assert drivers_imported_by("livechat.server.app") == []
