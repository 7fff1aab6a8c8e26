"""Rules stage: block and flag lists matched on normalised text (``livechat.fastpath``), whole words only.

A term matches when its skeleton (``livechat.fastpath.skeleton``: leetspeak, homoglyphs, accents,
punctuation and repeats undone) equals the skeleton of one word of the text or of several
consecutive words, so "hell" is not found in "hello" nor "ass" in "classic", while the evasions
stay caught: "b.a.d-w0rd" (punctuation inside a word), "bad word" (a term split into words) and
"B. 4 d w 0 0 r d" (a run of one-character words reads as one word). The compiled substring scan
runs first on every text: a whole-word match is also a substring of the text's skeleton, so only
the texts it hits are split into words.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

from livechat.fastpath import BlockScanner, skeleton


class RuleHit(IntEnum):
    NONE = 0
    FLAG = 1
    BLOCK = 2


def words(text: str) -> list[str]:
    """The skeletons of ``text``'s words: whitespace-separated tokens (trailing "!" dropped), a
    token with nothing left (emoji, punctuation) a separator, a run of one-character tokens one word."""
    out: list[str] = []
    letters: list[str] = []
    for token in text.split():
        # "!" reads as "i" inside a word ("b!tch") and as punctuation at its end ("ass!").
        sk = skeleton(token.rstrip("!"))
        if len(sk) == 1:
            letters.append(sk)
            continue
        if letters:
            out.append(skeleton("".join(letters)))
            letters = []
        if sk:
            out.append(sk)
    if letters:
        out.append(skeleton("".join(letters)))
    return out


class _WordList:
    """One term list: the substring scanner (a cheap first pass) and the terms by skeleton."""

    __slots__ = ("by_skeleton", "longest", "scanner")

    def __init__(self, terms: Sequence[str]) -> None:
        self.scanner = BlockScanner(terms)
        self.by_skeleton: dict[str, int] = {}
        for index, term in enumerate(terms):
            sk = skeleton(term)
            if sk:
                self.by_skeleton.setdefault(sk, index)
        self.longest = max((len(sk) for sk in self.by_skeleton), default=0)

    @property
    def terms(self) -> tuple[str, ...]:
        return self.scanner.terms

    def whole_word(self, text: str) -> int:
        """Index of the first term (by list order) matching whole words of ``text``, or -1."""
        found = -1
        ws = words(text)
        for start in range(len(ws)):
            joined = ""
            for word in ws[start:]:
                # Repeats collapse across the join as inside a word ("b a" + "ad" is "bad").
                joined += word[1:] if joined and word[0] == joined[-1] else word
                if len(joined) > self.longest:
                    break
                index = self.by_skeleton.get(joined, -1)
                if index >= 0 and (found < 0 or index < found):
                    found = index
        return found


class Rules:
    """Blocked terms reject a comment; flagged terms queue it for review. Synchronous, per comment."""

    __slots__ = ("_blocked", "_flagged")

    def __init__(self, blocked_terms: Sequence[str], flagged_terms: Sequence[str]) -> None:
        self._blocked = _WordList(blocked_terms) if blocked_terms else None
        self._flagged = _WordList(flagged_terms) if flagged_terms else None

    def check(self, text: str) -> tuple[RuleHit, str]:
        """The strongest hit and the configured term that caused it ("" when none)."""
        for hit, terms in ((RuleHit.BLOCK, self._blocked), (RuleHit.FLAG, self._flagged)):
            if terms is not None and terms.scanner.first_match(text) >= 0:
                index = terms.whole_word(text)
                if index >= 0:
                    return hit, terms.terms[index]
        return RuleHit.NONE, ""

    def check_many(self, texts: Sequence[str]) -> list[tuple[RuleHit, str]]:
        """``check`` of each text, one scanner call per list."""
        out = [(RuleHit.NONE, "")] * len(texts)
        for hit, terms in ((RuleHit.FLAG, self._flagged), (RuleHit.BLOCK, self._blocked)):
            if terms is None:
                continue
            for i, first in enumerate(terms.scanner.scan_many(texts)):
                if first >= 0:
                    index = terms.whole_word(texts[i])
                    if index >= 0:
                        out[i] = (hit, terms.terms[index])
        return out
