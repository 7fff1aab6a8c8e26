"""Run the Autobahn TestSuite cases (kosoku) against `livechat echo` and judge the reports.

    python -m tests.conformance.autobahn --full        # all of 1.* to 13.*, summary to artifacts/

Testee settings: 32 MiB messages (case 9.* sends up to 16 MiB) and matching queue caps, and
``--deflate-min-bytes 0``: kosoku 0.1.0 raises "Strings must be encoded before hashing" on an
uncompressed message over a permessage-deflate connection, which RFC 7692 §6 allows and livechat
sends below `deflate_min_bytes` by default.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Case results a conformant server may get: NON-STRICT (e.g. failing late rather than fast),
# INFORMATIONAL (close-code echo details) and UNIMPLEMENTED (an optional offer declined).
ACCEPTABLE = {"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"}
ACCEPTABLE_CLOSE = {"OK", "INFORMATIONAL", "UNIMPLEMENTED"}

# A subset that touches every area in about a minute: framing, pings, reserved bits, opcodes,
# fragmentation, UTF-8 (incl. fail-fast), close handling, limits, compression with every offer.
SUBSET = [
    "1.*",
    "2.*",
    "3.*",
    "4.*",
    "5.*",
    "6.1.*",
    "6.2.*",
    "6.3.*",
    "6.4.*",
    "6.5.*",
    "6.6.*",
    "6.7.*",
    "6.8.*",
    "6.9.*",
    "6.10.*",
    "6.11.*",
    "6.12.*",
    "6.16.*",
    "6.21.*",
    "6.22.1*",
    "7.*",
    "9.1.1",
    "9.2.1",
    "9.5.1",
    "9.6.1",
    "10.*",
    "12.1.1",
    "12.1.5",
    "12.2.10",
    "12.4.5",
    "12.5.17",
    "13.1.1",
    "13.2.5",
    "13.3.1",
    "13.4.10",
    "13.5.5",
    "13.6.10",
    "13.7.1",
    "13.7.18",
]


@dataclass
class Summary:
    total: int = 0
    behaviors: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.behaviors.items()))
        lines = [f"{self.total} cases; behaviour counts: {counts}"]
        lines.append("No FAILED case." if not self.failed else "FAILED: " + ", ".join(self.failed))
        return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_testee(port: int) -> subprocess.Popen[bytes]:
    cap = str(64 << 20)
    cmd = [
        sys.executable,
        "-m",
        "livechat.cli",
        "echo",
        "--port",
        str(port),
        "--max-message-bytes",
        str(32 << 20),
        "--send-queue-soft-bytes",
        cap,
        "--send-queue-hard-bytes",
        cap,
        "--deflate-min-bytes",
        "0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("livechat echo did not start")


def judge(report_dir: Path) -> Summary:
    s = Summary()
    for path in sorted(report_dir.glob("*_case_*.json")):
        r = json.loads(path.read_text())
        s.total += 1
        s.behaviors[f"{r['behavior']}/{r['behaviorClose']}"] += 1
        if r["behavior"] not in ACCEPTABLE or r["behaviorClose"] not in ACCEPTABLE_CLOSE:
            s.failed.append(f"{r['id']} ({r['behavior']}/{r['behaviorClose']}: {r.get('result', '')[:80]})")
    return s


def run(cases: list[str] | None, out: Path, parallelism: int = 2) -> Summary:
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    testee = start_testee(port)
    try:
        cmd = ["kosoku", "-p", str(parallelism), "-o", str(out)]
        for c in cases or []:
            cmd += ["-i", c]
        cmd.append(f"127.0.0.1:{port}")
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3000)
    finally:
        testee.terminate()
        testee.wait(10)
    return judge(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="every case (default: the CI subset)")
    p.add_argument("--out", type=Path, default=Path("artifacts/autobahn"))
    args = p.parse_args()
    summary = run(None if args.full else SUBSET, args.out)
    print(summary.markdown())
    (args.out / "summary.md").write_text(summary.markdown() + "\n")
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
