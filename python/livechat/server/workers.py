"""``livechat serve --workers N``: N edge processes behind one port, and one edge process alone.

Guarantees:

- **One owner of the port.** The parent binds ``edge.port`` once, without SO_REUSEPORT, and hands
  the listening socket to its workers by descriptor inheritance (``LIVECHAT_LISTEN_FD``, adopted by
  the Rust edge, ``edge_core/src/server/listener.rs``). Another ``livechat serve`` on the same port
  gets "address in use"; the workers take connections from the one accept queue. A worker that
  dies is started again; connections arriving meanwhile wait in the queue, never refused.
- **Shared state.** Each worker is a whole edge (its own services, node id leased from the
  registry, admin port ``ops.admin_port + i``); they share what the backends share. Cluster mode:
  the same Redis/Kafka/Cassandra/PostgreSQL as separate hosts would. Embedded mode (``memory://``
  broker and registry, SQLite): the parent runs a private ``redis-server`` on loopback with a
  random password for the workers' broker and registry, and they share the SQLite file. Why Redis
  and not a new SQLite-polled broker: the Redis broker and registry are the tested cross-edge
  path (bans, budgets, slow mode, counts, node leases), loopback round trips are ~0.1 ms, and
  it is one small process the parent owns and stops; a broker of our own would be a second
  implementation of every cross-edge rule.
- **Stopping.** SIGTERM/SIGINT to the parent is passed to every worker (each drains as a lone
  ``livechat serve`` does); the parent waits for them, then stops its Redis and closes the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import pickle
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from livechat.config import LiveChatConfig

log = logging.getLogger("livechat.server.workers")

#: Names the inherited listening socket in a worker's environment (read by the Rust edge).
LISTEN_FD_VAR: Final = "LIVECHAT_LISTEN_FD"
#: A worker that exits while the server is running is started again after this long.
RESTART_DELAY_S: Final = 1.0
#: The private Redis must answer PING within this long of being started.
REDIS_START_TIMEOUT_S: Final = 10.0
#: How often the parent looks at its workers (a dead one is noticed within this).
WATCH_INTERVAL_S: Final = 0.2

EXIT_OK: Final = 0
EXIT_PROBLEMS: Final = 1


# --- one edge process ---------------------------------------------------------------------------


def serve_in_process(config: LiveChatConfig) -> int:
    """Run one ``LiveChatServer`` until SIGINT/SIGTERM, then drain (the lone ``livechat serve`` and
    every worker). An inherited listening socket (``LIVECHAT_LISTEN_FD``) is used instead of a bind."""
    import uvloop

    from livechat.server import LiveChatServer

    async def run() -> None:
        gc.set_threshold(*config.ops.gc_thresholds)
        server = LiveChatServer(config)
        port = await server.start()
        # The edge has adopted the descriptor: nothing this process starts may take it too.
        os.environ.pop(LISTEN_FD_VAR, None)
        if config.ops.log_format == "plain":
            print(
                f"livechat serve: ws://{config.edge.host}:{port}/ (data in {config.backends.data_dir})",
                flush=True,
            )
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task[None]] = []

        def on_signal(sig: signal.Signals) -> None:
            log.info("%s received", sig.name, extra={"event": "signal", "signal": sig.name})
            if not stopping:
                stopping.append(loop.create_task(server.stop()))

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        await server.wait_stopped()

    try:
        uvloop.run(run())
    except OSError as exc:
        log.error("cannot start: %s", exc, extra={"event": "start_failed"})
        return EXIT_PROBLEMS
    return EXIT_OK


# --- the parent ---------------------------------------------------------------------------------


def bind_listener(host: str, port: int, backlog: int) -> socket.socket:
    """The server's one listening socket: SO_REUSEADDR only (restarts are not held up by
    TIME_WAIT; a stranger cannot share the port), inheritable by the workers."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LocalRedis:
    """A private ``redis-server`` on loopback (random port and password, no persistence): the
    embedded workers' shared broker and registry. Owned and stopped by the parent."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.password = secrets.token_hex(16)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}"

    def start(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "server.workers > 1 with the embedded memory:// broker/registry needs redis-server on "
                "PATH (or point backends.broker and backends.registry at a Redis)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_loopback_port()
        # The password goes on stdin (a config file of one line), not the command line (ps).
        args = [binary, "-", "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.data_dir), "--logfile", "workers-redis.log"]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"requirepass {self.password}\n".encode())
        self.proc.stdin.close()
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode} (see {self.data_dir})")
            if self._answers():
                return self.url
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {REDIS_START_TIMEOUT_S} s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                got = b""
                while b"PONG" not in got and len(got) < 256:
                    chunk = s.recv(256)
                    if not chunk:
                        return False
                    got += chunk
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def worker_config(config: LiveChatConfig, index: int, port: int, shared_redis: str | None) -> LiveChatConfig:
    """Worker ``index``'s configuration: the bound port, its own admin port and edge id, and the
    private Redis as broker and registry in embedded mode."""
    ops = config.ops
    if ops.admin_enabled and ops.admin_port != 0:
        ops = dataclasses.replace(ops, admin_port=ops.admin_port + index)
    backends = config.backends
    if shared_redis is not None:
        backends = dataclasses.replace(
            backends,
            broker=shared_redis if backends.broker.startswith("memory://") else backends.broker,
            registry=shared_redis if backends.registry.startswith("memory://") else backends.registry,
        )
    edge_id = f"{config.edge_id}-w{index}" if config.edge_id else None
    return dataclasses.replace(
        config,
        edge_id=edge_id,
        edge=dataclasses.replace(config.edge, port=port),
        ops=ops,
        backends=backends,
    )


def needs_local_redis(config: LiveChatConfig) -> bool:
    b = config.backends
    return b.broker.startswith("memory://") or b.registry.startswith("memory://")


class Workers:
    """The parent: the bound port, the private Redis (embedded mode) and the worker processes."""

    def __init__(self, config: LiveChatConfig) -> None:
        self.config = config
        self.count = config.server.workers
        self.sock: socket.socket | None = None
        self.redis: LocalRedis | None = None
        self.shared_redis: str | None = None
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * self.count
        self.restarts = 0
        self.port = 0

    def start(self) -> int:
        """Bind the port (OSError "address in use" if anything holds it), start the private Redis
        if needed, then every worker. Returns the port."""
        edge = self.config.edge
        self.sock = bind_listener(edge.host, edge.port, edge.listen_backlog)
        self.port = self.sock.getsockname()[1]
        try:
            if needs_local_redis(self.config):
                self.redis = LocalRedis(Path(self.config.backends.data_dir))
                self.shared_redis = self.redis.start()
            for i in range(self.count):
                self._spawn(i)
        except BaseException:
            self.stop()
            raise
        log.info(
            "livechat serve: %d workers on ws://%s:%d/",
            self.count,
            edge.host,
            self.port,
            extra={"event": "workers_serving", "port": self.port, "workers": self.count},
        )
        return self.port

    def _spawn(self, index: int) -> None:
        assert self.sock is not None
        fd = self.sock.fileno()
        config = worker_config(self.config, index, self.port, self.shared_redis)
        env = {**os.environ, LISTEN_FD_VAR: str(fd)}
        # The worker's config travels on its stdin (pickled: the same code on both ends), so no
        # secret is written to disk or shown on a command line.
        proc = subprocess.Popen(
            [sys.executable, "-m", "livechat.server.workers"],
            stdin=subprocess.PIPE,
            pass_fds=(fd,),
            env=env,
        )
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps(config))
        proc.stdin.close()
        self.procs[index] = proc

    def watch(self, stopping: list[signal.Signals]) -> None:
        """Keep the workers running until a signal lands in ``stopping``."""
        died_at: dict[int, float] = {}
        while not stopping:
            now = time.monotonic()
            for i, proc in enumerate(self.procs):
                if proc is None or proc.poll() is None:
                    continue
                if i not in died_at:
                    log.warning(
                        "worker %d exited with %s; restarting",
                        i,
                        proc.returncode,
                        extra={"event": "worker_exited", "worker": i, "code": proc.returncode},
                    )
                    died_at[i] = now
                elif now - died_at[i] >= RESTART_DELAY_S:
                    del died_at[i]
                    self.restarts += 1
                    self._spawn(i)
            time.sleep(WATCH_INTERVAL_S)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Pass ``sig`` to every worker, wait for their drains, stop Redis, close the port. Returns
        the worst worker exit code (0 when every one drained cleanly)."""
        ops = self.config.ops
        wait_s = ops.drain_grace_s + ops.drain_timeout_ms / 1000 + 15
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        deadline = time.monotonic() + wait_s
        worst = 0
        for proc in live:
            try:
                code = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            worst = max(worst, abs(code))
        if self.redis is not None:
            self.redis.stop()
        if self.sock is not None:
            self.sock.close()
        return worst


def serve_workers(config: LiveChatConfig) -> int:
    """``livechat serve`` with ``server.workers > 1``: run until SIGINT/SIGTERM."""
    workers = Workers(config)
    stopping: list[signal.Signals] = []

    def on_signal(signum: int, _frame: object) -> None:
        sig = signal.Signals(signum)
        log.info("%s received", sig.name, extra={"event": "signal", "signal": sig.name})
        stopping.append(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        port = workers.start()
    except (OSError, RuntimeError) as exc:
        log.error("cannot start: %s", exc, extra={"event": "start_failed"})
        return EXIT_PROBLEMS
    if config.ops.log_format == "plain":
        print(f"livechat serve: {workers.count} workers on ws://{config.edge.host}:{port}/", flush=True)
    workers.watch(stopping)
    return EXIT_OK if workers.stop(signal.SIGTERM) == 0 else EXIT_PROBLEMS


def _worker_main() -> int:
    """A worker process: its configuration on stdin, the listening socket inherited."""
    from livechat.logs import configure

    config: LiveChatConfig = pickle.load(sys.stdin.buffer)
    configure(config.ops.log_format, config.ops.log_level)
    return serve_in_process(config)


if __name__ == "__main__":
    sys.exit(_worker_main())
