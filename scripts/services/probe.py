#!/usr/bin/env python3
"""Protocol-level "is it answering?" probes for the JVM services, standard library only.

    probe.py kafka HOST PORT       # ApiVersions v0: a broker answers with error_code 0
    probe.py cassandra HOST PORT   # CQL OPTIONS: a node answers SUPPORTED

Exit 0 when the service answered correctly within the timeout (2 s), 1 otherwise. An open port alone is not
enough: a broker still starting, or another program on the port, must not count as "up".
"""

from __future__ import annotations

import socket
import struct
import sys

TIMEOUT_S = 2.0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def kafka(sock: socket.socket) -> bool:
    # RequestHeader v1: api_key 18 (ApiVersions), api_version 0, correlation_id, client_id (int16 string).
    client = b"livechat-probe"
    body = struct.pack(">hhih", 18, 0, 7331, len(client)) + client
    sock.sendall(struct.pack(">i", len(body)) + body)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    corr, err = struct.unpack(">ih", _recv_exact(sock, min(size, 6)))
    return corr == 7331 and err == 0


def cassandra(sock: socket.socket) -> bool:
    # Frame v4 header: version 0x04 (request), flags 0, stream 1, opcode 0x05 OPTIONS, body length 0.
    sock.sendall(struct.pack(">BBhBi", 0x04, 0, 1, 0x05, 0))
    version, _flags, _stream, opcode, _length = struct.unpack(">BBhBi", _recv_exact(sock, 9))
    return version == 0x84 and opcode == 0x06  # response bit set, SUPPORTED


def main() -> int:
    kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    check = {"kafka": kafka, "cassandra": cassandra}[kind]
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S) as sock:
            sock.settimeout(TIMEOUT_S)
            return 0 if check(sock) else 1
    except (OSError, struct.error):
        return 1


if __name__ == "__main__":
    sys.exit(main())
