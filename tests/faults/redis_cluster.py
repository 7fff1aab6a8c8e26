"""A Redis Cluster (3 masters + 3 replicas) of one fault run alone, so a master can be killed.

The shared services are never stopped or signalled (other suites use them), so the failover case
makes its own cluster with the project's script (``scripts/services.sh up redis-cluster``) in a
directory and on ports of its own (``LIVECHAT_SERVICES_DIR``, ``LIVECHAT_REDIS_CLUSTER_PORT``:
19801-19806, bus ports +10000). Node timeout 2 s as in the shared one: a replica is promoted ~3-4 s
after its master dies. A cluster that cannot start raises RuntimeError (the test fails).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Final

from tests.cluster_services import SCRIPT

FIRST_PORT: Final = 19801


class PrivateRedisCluster:
    def __init__(self, directory: Path, first_port: int = FIRST_PORT) -> None:
        self.dir = directory
        self.first_port = first_port
        self.env = {
            **os.environ,
            "LIVECHAT_SERVICES_DIR": str(directory),
            "LIVECHAT_REDIS_CLUSTER_PORT": str(first_port),
        }
        self.url = ""

    def _script(self, *args: str) -> str:
        done = subprocess.run(
            [str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"services.sh {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def start(self) -> str:
        for line in self._script("up", "redis-cluster").splitlines():
            name, _, url = line.partition(" ")
            if name == "redis-cluster" and url:
                self.url = url
                return url
        raise RuntimeError("services.sh up redis-cluster printed no URL")

    def _cli(self, port: int, *args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout

    def masters(self) -> list[int]:
        """Ports of the masters that own slots and are not failing, as the first live node sees it."""
        for port in range(self.first_port, self.first_port + 6):
            nodes = self._cli(port, "cluster", "nodes")
            if not nodes:
                continue
            found = []
            for line in nodes.splitlines():
                parts = line.split()
                if len(parts) > 8 and "master" in parts[2] and "fail" not in parts[2]:
                    found.append(int(parts[1].split("@")[0].rpartition(":")[2]))
            return sorted(found)
        return []

    def _pid(self, port: int) -> int:
        return int((self.dir / "run" / f"redis-{port}.pid").read_text().strip())

    def kill(self, port: int) -> None:
        """kill -9 the node on ``port``."""
        os.kill(self._pid(port), signal.SIGKILL)

    def restart(self, port: int) -> None:
        """Start the killed node again from its nodes.conf: it rejoins (as a replica of its
        promoted one, once the cluster has failed over)."""
        node_dir = self.dir / "redis-cluster" / str(port)
        subprocess.run(
            [
                "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--protected-mode", "no",
                "--daemonize", "yes",
                "--dir", str(node_dir),
                "--pidfile", str(self.dir / "run" / f"redis-{port}.pid"),
                "--logfile", str(node_dir / "redis.log"),
                "--save", "",
                "--appendonly", "no",
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", "2000",
                "--cluster-replica-validity-factor", "0",
                "--maxclients", "10000",
            ],
            check=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        self._script("down", "redis-cluster")
