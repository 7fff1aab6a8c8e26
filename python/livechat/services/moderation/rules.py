"""Rules stage: block and flag lists matched on normalised text (``livechat.fastpath``)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

from livechat.fastpath import BlockScanner


class RuleHit(IntEnum):
    NONE = 0
    FLAG = 1
    BLOCK = 2


class Rules:
    """Blocked terms reject a comment; flagged terms queue it for review. Synchronous, per comment."""

    __slots__ = ("_blocked", "_flagged")

    def __init__(self, blocked_terms: Sequence[str], flagged_terms: Sequence[str]) -> None:
        self._blocked = BlockScanner(blocked_terms) if blocked_terms else None
        self._flagged = BlockScanner(flagged_terms) if flagged_terms else None

    def check(self, text: str) -> tuple[RuleHit, str]:
        """The strongest hit and the configured term that caused it ("" when none)."""
        if self._blocked is not None:
            index = self._blocked.first_match(text)
            if index >= 0:
                return RuleHit.BLOCK, self._blocked.terms[index]
        if self._flagged is not None:
            index = self._flagged.first_match(text)
            if index >= 0:
                return RuleHit.FLAG, self._flagged.terms[index]
        return RuleHit.NONE, ""

    def check_many(self, texts: Sequence[str]) -> list[tuple[RuleHit, str]]:
        """``check`` of each text, one scanner call per list."""
        out = [(RuleHit.NONE, "")] * len(texts)
        blocked = self._blocked.scan_many(texts) if self._blocked is not None else None
        flagged = self._flagged.scan_many(texts) if self._flagged is not None else None
        for i in range(len(texts)):
            if blocked is not None and blocked[i] >= 0:
                assert self._blocked is not None
                out[i] = (RuleHit.BLOCK, self._blocked.terms[blocked[i]])
            elif flagged is not None and flagged[i] >= 0:
                assert self._flagged is not None
                out[i] = (RuleHit.FLAG, self._flagged.terms[flagged[i]])
        return out
