#!/usr/bin/env python3
"""Write the hand-made seed inputs for each fuzz target into CORPUS/<target>/ (default: corpus/).

The seeds follow each target's input layout (see the header of fuzz_targets/<target>.rs): a
config byte or two, then the bytes under test. Idempotent: files have fixed names, and whatever
the fuzzer added to the corpus stays.
"""

import struct
import sys
import zlib
from pathlib import Path

KEY = b"\x37\xfa\x21\x3d"
TAIL = b"\x00\x00\xff\xff"


def frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False, mask: bool = True) -> bytes:
    """One client frame (RFC 6455 §5.2), masked unless told otherwise."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n <= 0xFFFF:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    return head + KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


def deflate_messages(*messages: bytes, level: int = 6) -> list[bytes]:
    """Raw deflate with the context kept across messages, sync-flushed, tail stripped (RFC 7692)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    out = []
    for m in messages:
        z = c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)
        out.append(z[:-4] if z.endswith(TAIL) else z)
    return out


def codec() -> dict[str, bytes]:
    # Config byte: bit 0 deflate, bit 1 client_no_context_takeover, bits 2-3 the limit index.
    plain, deflate, deflate_nct = 0x0C, 0x0D, 0x0F
    hello = frame(1, "héllo".encode())
    frags = (
        frame(1, "héllo ".encode()[:2], fin=False)
        + frame(9, b"ping")
        + frame(0, "héllo wörld".encode()[2:], fin=True)
        + frame(8, struct.pack(">H", 1000) + b"bye")
    )
    z1, z2 = deflate_messages(b"hello hello hello", b"hello again, hello")
    return {
        "text": bytes([plain, 0]) + hello,
        "fragments-ping-close": bytes([plain, 2]) + frags,
        "binary-126": bytes([0x08, 7]) + frame(2, bytes(range(200))),
        "len64-nonminimal": bytes([plain, 0]) + b"\x82\xff" + struct.pack(">Q", 5) + KEY + b"abcde",
        "unmasked": bytes([plain, 0]) + frame(1, b"hi", mask=False),
        "bad-close-code": bytes([plain, 0]) + frame(8, struct.pack(">H", 1005)),
        "utf8-split-bad": bytes([plain, 1]) + frame(1, b"\xce", fin=False) + frame(0, b"\x41"),
        "too-big": bytes([0x00, 0]) + frame(2, b"xx"),
        "deflate-context": bytes([deflate, 3]) + frame(1, z1, rsv1=True) + frame(1, z2, rsv1=True),
        "deflate-nct": bytes([deflate_nct, 0]) + frame(2, deflate_messages(b"abc" * 50)[0], rsv1=True),
        "deflate-fragments": bytes([deflate, 5])
        + frame(1, z1[:4], fin=False, rsv1=True)
        + frame(10, b"")
        + frame(0, z1[4:]),
    }


def handshake() -> dict[str, bytes]:
    # Config byte: bit 0 allow deflate, bits 1-2 the size limit index (3: 8192).
    c = bytes([0x07])
    base = (
        "GET /ws?stream=1 HTTP/1.1\r\nHost: chat.example.com\r\nUpgrade: websocket\r\n"
        "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
    )
    full = base + (
        "Origin: https://chat.example.com\r\nAuthorization: Bearer abc.def.ghi\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; server_max_window_bits=10,"
        " permessage-deflate\r\nX-Forwarded-For: 198.51.100.7, 10.0.0.2\r\n"
        'Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"\r\n\r\n'
    )
    seeds = {
        "upgrade-full": c + full.encode(),
        "upgrade-min": c + (base + "\r\n").encode(),
        "two-origins": c + (base + "Origin: https://a.example\r\norigin: https://b.example\r\n\r\n").encode(),
        "pattern-origin": c + (base + "Origin: https://a.b.example.com:8443\r\n\r\n").encode(),
        "listener-origin": c + (base + "Origin: http://[::1]:8765/\r\n\r\n").encode(),
        "plain-get": c + b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n",
        "post": c + (base.replace("GET", "POST") + "\r\n").encode(),
        "http10": c + (base.replace("HTTP/1.1", "HTTP/1.0") + "\r\n").encode(),
        "small-limit": bytes([0x00]) + full.encode(),
        "nct": c
        + (
            base + "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n"
        ).encode(),
    }
    for i, o in enumerate(
        ["https://chat.example.com:0443/", "HTTPS://A.EXAMPLE.COM:8443", "null", "file://"]
    ):
        seeds[f"origin-text-{i}"] = c + o.encode()
    return seeds


def inflate() -> dict[str, bytes]:
    # Byte 0: bits 0-2 the limit index, bit 3 round-trip mode, bit 4 a prefix in the buffer,
    # bits 5-7 the repeat count (round trips); byte 1: level / separator.
    (hello,) = deflate_messages(b"hello " * 20)
    (bomb,) = deflate_messages(bytes(1 << 21), level=9)
    (stored,) = deflate_messages(b"stored block", level=0)
    return {
        "hello-64k": bytes([0x04, 0]) + hello,
        "hello-prefix-125": bytes([0x12, 0]) + hello,
        "bomb-256k": bytes([0x07, 0]) + bomb,
        "bomb-64k": bytes([0x05, 0]) + bomb,
        "stored-1000": bytes([0x03, 0]) + stored,
        "corrupt": bytes([0x04, 0]) + b"\xff\xff\xff",
        "round-trip": bytes([0x0C, ord(",")]) + b"hello,hello world,,hello again",
        "round-trip-long": bytes([0xEB, ord("|")]) + b"abcdefgh|ijkl",
    }


def msgpack() -> dict[str, bytes]:
    # Raw bytes are validated as they are and also drive the value generator.
    say = b"\x83\xa2op\xa3say\xa4text\xa2hi\xa3ref\xcd\x01\x00"
    return {
        "say": say,
        "nested": b"\x91" * 32 + b"\xc0",
        "too-deep": b"\x91" * 33 + b"\xc0",
        "lying-array32": b"\xdd\xff\xff\xff\xff",
        "str8-bin16-ext": b"\x93\xd9\x03abc\xc5\x00\x02xy\xc7\x01\x05z",
        "floats-ints": b"\x94\xcb" + bytes(8) + b"\xd3" + bytes(8) + b"\xe0\xd1\x80\x00",
        "generator": bytes([5 | 0x80, 3, 3, 7, 2, 3, 200, 7, 30, 6, 1, 1, 0]),
        "c1": b"\xc1",
    }


def utf8() -> dict[str, bytes]:
    # Byte 0: number of cut points (mod 8), then the cut bytes, then the text.
    return {
        "ascii": b"\x00hello",
        "multibyte-cut": b"\x02\x02\x05" + "é€𝄞".encode(),
        "bad-continuation": b"\x01\x01\xce\x41",
        "truncated": b"\x00\xe2\x82",
        "surrogate": b"\x00\xed\xa0\x80",
        "overlong": b"\x00\xc0\xaf",
        "close-payload": b"\x00\x03\xe8bye",
    }


TARGETS = {"codec": codec, "handshake": handshake, "inflate": inflate, "msgpack": msgpack, "utf8": utf8}


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "corpus")
    for target, make in TARGETS.items():
        d = root / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in make().items():
            (d / f"seed-{name}").write_bytes(data)


if __name__ == "__main__":
    main()
