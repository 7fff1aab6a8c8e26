"""Raw WebSocket over non-blocking sockets: exact client bytes out, server frames parsed and checked in.

The edge tests need to send what no well-behaved client library would (unmasked frames, reserved
opcodes, lying length fields, deflate bombs) and to see exactly what the server answers (close
code, HTTP status, EOF). Frames are built here from RFC 6455 §5.2 directly; valid ones are
cross-checked against ``livechat._edge.encode_frame`` in the tests. Server frames are inflated
with stdlib zlib (raw deflate, RFC 7692 §7.2.2), not with the edge's own inflater.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
import zlib
from dataclasses import dataclass
from typing import ClassVar

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFLATE_TAIL = b"\x00\x00\xff\xff"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# Generous for a loaded 2-core box; a healthy edge answers in well under a millisecond.
TIMEOUT = 5.0


def client_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bytes | None = b"\x37\xfa\x21\x3d",
    declared_len: int | None = None,
) -> bytes:
    """One frame as a client would write it. ``mask=None`` leaves it unmasked (illegal from a
    client); ``declared_len`` puts a different length in the header than the payload has."""
    first = (
        (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | (0x10 if rsv3 else 0) | opcode
    )
    n = len(payload) if declared_len is None else declared_len
    mask_bit = 0x80 if mask is not None else 0
    if n < 126:
        header = struct.pack("!BB", first, mask_bit | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask is None:
        return header + payload
    return header + mask + apply_mask(payload, mask)


def apply_mask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    repeated = (mask * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(data), "big")


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


def raw_deflate(data: bytes) -> bytes:
    """A permessage-deflate message body (no context takeover): raw deflate, sync flush, tail cut."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(DEFLATE_TAIL)
    return out[:-4]


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def upgrade_request(
    path: str = "/",
    *,
    key: str | None = None,
    method: str = "GET",
    http_version: str = "1.1",
    version: str | None = "13",
    host: str | None = "edge.test",
    upgrade: str | None = "websocket",
    connection: str | None = "Upgrade",
    extensions: str | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> bytes:
    """An upgrade request; pass None for any header to leave it out."""
    lines = [f"{method} {path} HTTP/{http_version}"]
    for name, value in [
        ("Host", host),
        ("Upgrade", upgrade),
        ("Connection", connection),
        ("Sec-WebSocket-Key", key if key is not None else new_key()),
        ("Sec-WebSocket-Version", version),
        ("Sec-WebSocket-Extensions", extensions),
        *(extra or []),
    ]:
        if value is not None:
            lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


def parse_http_head(head: bytes) -> HttpResponse:
    """Status line and headers (names lower-cased) of one HTTP/1.1 response head."""
    status_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    version, status, *reason = status_line.split(" ", 2)
    assert version == "HTTP/1.1", status_line
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpResponse(int(status), reason[0] if reason else "", headers, b"")


@dataclass
class ServerFrame:
    fin: bool
    rsv1: bool
    opcode: int
    payload: bytes


@dataclass
class Message:
    """A whole data message from the server, after reassembly and inflation."""

    binary: bool
    data: bytes
    compressed: bool
    frames: int


class Closed(Exception):
    """The server sent a close frame (``code`` 1005 when it carried none)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed {code} {reason!r}")
        self.code = code
        self.reason = reason


class RawClient:
    """One connection driven byte by byte over a non-blocking socket. Pings are answered while
    reading messages.

    Reads go straight to the socket (not an asyncio stream) so bytes the server sent before it
    reset the connection are still read: a transport would raise the write error first.
    Writes go out in order from one writer task; a write failing because the server already
    closed is recorded in ``write_error``, not raised.
    """

    #: Connections not aborted yet: the edge conftest aborts what a test left open (a test may end
    #: on ``expect_close``), so no socket is garbage-collected open (a ResourceWarning).
    opened: ClassVar[set[RawClient]] = set()

    def __init__(self, sock: socket.socket, response: HttpResponse, buffered: bytes) -> None:
        self.sock = sock
        RawClient.opened.add(self)
        self.response = response
        agreed = response.headers.get("sec-websocket-extensions", "")
        self.deflate = agreed.startswith("permessage-deflate")
        self.pings: list[bytes] = []
        self.buf = bytearray(buffered)
        self.eof = False
        # The server reset the connection (RST) instead of closing it (FIN).
        self.reset = False
        self.write_error: OSError | None = None
        self.close_sent = False
        self._loop = asyncio.get_running_loop()
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop())

    @classmethod
    async def connect(
        cls,
        port: int,
        path: str = "/",
        *,
        extensions: str | None = None,
        extra: list[tuple[str, str]] | None = None,
        rcvbuf: int | None = None,
        maxseg: int | None = None,
        trailing: bytes = b"",
    ) -> RawClient:
        """Handshake (checking the 101 and its accept key); ``trailing`` goes in the same write."""
        sock = await open_socket(port, rcvbuf=rcvbuf, maxseg=maxseg)
        key = new_key()
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(
            sock, upgrade_request(path, key=key, extensions=extensions, extra=extra) + trailing
        )
        head = bytearray()
        while b"\r\n\r\n" not in head:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), TIMEOUT)
            assert chunk, f"EOF during the handshake: {bytes(head)!r}"
            head += chunk
        end = head.index(b"\r\n\r\n") + 4
        response = parse_http_head(bytes(head[:end]))
        assert response.status == 101, response
        assert response.headers["sec-websocket-accept"] == accept_for(key)
        return cls(sock, response, bytes(head[end:]))

    async def _write_loop(self) -> None:
        while True:
            data = await self._outgoing.get()
            if self.write_error is None:
                try:
                    await self._loop.sock_sendall(self.sock, data)
                except OSError as e:
                    self.write_error = e

    def send(self, data: bytes) -> None:
        if data and data[0] & 0x0F == OP_CLOSE:
            self.close_sent = True
        self._outgoing.put_nowait(data)

    def send_message(self, payload: bytes | str) -> None:
        if isinstance(payload, str):
            self.send(client_frame(OP_TEXT, payload.encode()))
        else:
            self.send(client_frame(OP_BINARY, payload))

    async def _fill(self, timeout: float) -> None:
        if self.eof:
            raise EOFError("server closed the connection")
        try:
            chunk = await asyncio.wait_for(self._loop.sock_recv(self.sock, 1 << 20), timeout)
        except ConnectionResetError:
            chunk, self.reset = b"", True
        if not chunk:
            self.eof = True
            raise EOFError("server closed the connection")
        self.buf += chunk

    async def read_exactly(self, n: int, timeout: float = TIMEOUT) -> bytes:
        while len(self.buf) < n:
            await self._fill(timeout)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def read_to_eof(self, timeout: float = TIMEOUT) -> bytes:
        """Everything left until the server ends the TCP connection (fails if it never does)."""
        while True:
            try:
                await self._fill(timeout)
            except EOFError:
                out = bytes(self.buf)
                self.buf.clear()
                return out

    async def recv_frame(self, timeout: float = TIMEOUT) -> ServerFrame:
        """One server frame; server frames must be unmasked and carry no RSV2/RSV3."""
        b0, b1 = await self.read_exactly(2, timeout)
        assert b1 & 0x80 == 0, "server frames are never masked"
        assert b0 & 0x30 == 0, "RSV2/RSV3 set by the server"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.read_exactly(2, timeout))
            assert n >= 126, "non-minimal length"
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.read_exactly(8, timeout))
            assert n >= 1 << 16, "non-minimal length"
        payload = await self.read_exactly(n, timeout)
        return ServerFrame(bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, payload)

    async def recv_message(self, timeout: float = TIMEOUT) -> Message:
        """The next data message; raises Closed on a close frame (answered with a close frame
        unless this side closed first). Answers pings."""
        parts: list[bytes] = []
        first: ServerFrame | None = None
        frames = 0
        while True:
            f = await self.recv_frame(timeout)
            if f.opcode == OP_PING:
                self.pings.append(f.payload)
                self.send(client_frame(OP_PONG, f.payload))
                continue
            if f.opcode == OP_PONG:
                continue
            if f.opcode == OP_CLOSE:
                code = struct.unpack("!H", f.payload[:2])[0] if f.payload else 1005
                if not self.close_sent:
                    # As a client does (RFC 6455 §5.5.1): the server then closes TCP at once.
                    self.send(client_frame(OP_CLOSE, f.payload[:2]))
                raise Closed(code, f.payload[2:].decode())
            frames += 1
            if first is None:
                assert f.opcode in (OP_TEXT, OP_BINARY), f"message starts with opcode {f.opcode}"
                first = f
            else:
                assert f.opcode == OP_CONT and not f.rsv1, "bad continuation from the server"
            parts.append(f.payload)
            if f.fin:
                break
        data = b"".join(parts)
        if first.rsv1:
            assert self.deflate, "RSV1 without negotiated permessage-deflate"
            data = zlib.decompressobj(-15).decompress(data + DEFLATE_TAIL)
        if first.opcode == OP_TEXT:
            data.decode("utf-8")
        return Message(first.opcode == OP_BINARY, data, first.rsv1, frames)

    async def expect_close(self, code: int, timeout: float = TIMEOUT) -> str:
        """Skip data until the close frame; check its code, then that TCP ends. Returns the reason."""
        while True:
            try:
                await self.recv_message(timeout)
            except Closed as c:
                assert c.code == code, f"expected close {code}, got {c.code} {c.reason!r}"
                await self.read_to_eof(timeout)
                return c.reason

    async def close(self, code: int = 1000) -> None:
        """Clean close handshake from the client side."""
        self.send(client_frame(OP_CLOSE, close_payload(code)))
        await self.expect_close(code)
        self.abort()

    def abort(self) -> None:
        RawClient.opened.discard(self)
        self._writer.cancel()
        self.sock.close()


# Loopback's MSS is ~64 KiB, and Linux sizes a new connection's send buffer from the peer's MSS:
# every edge socket to a loopback client starts with tcp_wmem's max (4 MiB here) of kernel
# buffer. A client advertising an Ethernet MSS gets the ~130 KiB a real NIC connection gets,
# so a client that stops reading backs up into the edge's own send queue within ~130 KiB.
ETHERNET_MSS = 1448


async def open_socket(port: int, *, rcvbuf: int | None = None, maxseg: int | None = None) -> socket.socket:
    """A connected non-blocking TCP socket to the edge on loopback."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Both before connect: they shape the SYN (window scale, MSS option).
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if maxseg is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, maxseg)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), TIMEOUT)
    except BaseException:
        sock.close()
        raise
    return sock
