"""What the viewers of one load-generator process received, kept cheap on the receive path.

Every viewer of a process gets the same bytes for the same WebSocket message (the same bench
message from a peer, the same tick frame from livechat), so a message is decoded once per process
and keyed by its bytes; each viewer then only appends its receive time to that entry. Latencies
(receive time - send time, for every viewer x carried message) are computed with numpy after the
measured step, so the load generator spends its CPU on receiving while the server is measured.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from bench.fanout import latency
from bench.fanout.payload import Decoder, NotBenchMessage


class Entry:
    """One distinct received WebSocket message: the bench messages it carries and who got it when."""

    __slots__ = ("first", "last", "recv_ns", "sent_ns", "seqs")

    def __init__(self, seqs: list[int], sent_ns: list[int]) -> None:
        self.seqs = seqs
        self.sent_ns = sent_ns
        self.first = seqs[0] if seqs else -1
        self.last = seqs[-1] if seqs else -1
        self.recv_ns: list[int] = []

    def in_window(self, lo: int, hi: int) -> list[int]:
        """Positions of the carried messages whose seq is in [lo, hi)."""
        if lo <= self.first and self.last < hi:
            return list(range(len(self.seqs)))
        return [i for i, seq in enumerate(self.seqs) if lo <= seq < hi]


class Ledger:
    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        self.entries: dict[bytes, Entry] = {}
        # A viewer whose next message does not start at the seq after its last one (loss/reorder).
        self.gaps = 0
        self.malformed = 0
        self.malformed_example = ""
        self.unexpected_text = 0
        self.disconnects = 0
        self.close_codes: Counter[str] = Counter()
        self.closing = False

    def admit(self, message: bytes) -> Entry | None:
        try:
            seqs, sent_ns = self.decoder(message)
        except NotBenchMessage as exc:
            self.malformed += 1
            self.malformed_example = self.malformed_example or str(exc)
            return None
        entry = Entry(seqs, sent_ns)
        self.entries[message] = entry
        return entry

    def delivered(self, lo: int, hi: int) -> int:
        """Deliveries so far of bench messages with seq in [lo, hi), summed over viewers."""
        total = 0
        for entry in self.entries.values():
            if entry.recv_ns and entry.last >= lo and entry.first < hi:
                total += len(entry.recv_ns) * len(entry.in_window(lo, hi))
        return total

    def summarize(self, lo: int, hi: int) -> dict[str, Any]:
        """Deliveries and latency histogram for seq in [lo, hi); forgets entries wholly before ``hi``."""
        histogram = latency.empty()
        delivered = 0
        max_us = 0.0
        for key, entry in list(self.entries.items()):
            positions = entry.in_window(lo, hi) if entry.recv_ns else []
            if positions:
                recv = np.asarray(entry.recv_ns, dtype=np.int64)
                sent = np.asarray([entry.sent_ns[i] for i in positions], dtype=np.int64)
                lat_us = (recv[:, None] - sent[None, :]).ravel().astype(np.float64) / 1000.0
                latency.add(histogram, lat_us)
                max_us = max(max_us, float(lat_us.max()))
                delivered += lat_us.size
            if entry.last < hi:
                del self.entries[key]
        return {
            "delivered": delivered,
            "histogram": latency.to_sparse(histogram),
            "max_us": max_us,
            **self.counters(),
        }

    def counters(self) -> dict[str, Any]:
        return {
            "gaps": self.gaps,
            "malformed": self.malformed,
            "malformed_example": self.malformed_example,
            "unexpected_text": self.unexpected_text,
            "disconnects": self.disconnects,
            "close_codes": dict(self.close_codes),
        }
