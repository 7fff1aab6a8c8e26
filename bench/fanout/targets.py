"""The servers a fan-out run compares, and the command that starts each."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Installs the pinned `ws` outside the repo (once), then execs node on bench/peers/ws_broadcast.mjs.
NODE_PEER_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "node-peer.sh"


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    # livechat batches a stream's messages into one tick frame per tick; peers send one each.
    tick_frames: bool
    command: Callable[[str, int], list[str]]
    # Appended to the command, e.g. livechat CLI tuning flags ("--tick-max-ms 250").
    extra_args: tuple[str, ...] = ()

    def argv(self, host: str, port: int) -> list[str]:
        return [*self.command(host, port), *self.extra_args]


def _livechat_command(host: str, port: int) -> list[str]:
    """``livechat fanout`` when the CLI is installed, else the bench's own Edge runner."""
    exe = shutil.which("livechat")
    if exe is not None and importlib.util.find_spec("livechat.cli") is not None:
        return [exe, "fanout", "--host", host, "--port", str(port)]
    return [sys.executable, "-m", "bench.fanout.subject", "--host", host, "--port", str(port)]


def _module_command(module: str) -> Callable[[str, int], list[str]]:
    def command(host: str, port: int) -> list[str]:
        return [sys.executable, "-m", module, "--host", host, "--port", str(port)]

    return command


def _node_ws_command(host: str, port: int) -> list[str]:
    """The script execs node, so the harness measures the node process itself (same pid)."""
    return [str(NODE_PEER_SCRIPT), "serve", "--host", host, "--port", str(port)]


TARGETS: dict[str, Target] = {
    "livechat": Target("livechat", True, _livechat_command),
    "picows": Target("picows", False, _module_command("bench.peers.picows_broadcast")),
    "websockets": Target("websockets", False, _module_command("bench.peers.websockets_broadcast")),
    "node-ws": Target("node-ws", False, _node_ws_command),
}
# What `make bench-fanout` runs: livechat first, so every peer gets a ratio against it in the report.
DEFAULT_TARGETS = ",".join(TARGETS)


def parse_targets(spec: str, livechat_args: tuple[str, ...] = ()) -> list[Target]:
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in TARGETS]
    if unknown or not names:
        raise ValueError(f"unknown target(s) {unknown or spec!r}; choose from {', '.join(TARGETS)}")
    targets = [TARGETS[name] for name in names]
    return [dataclasses.replace(t, extra_args=livechat_args) if t.name == "livechat" else t for t in targets]
