"""Block-list matching against obfuscated text: plain-Python twin of ``livechat._speedups``.

A text and every term are reduced to a *skeleton*: compatibility-decomposed (NFKD, so fullwidth and
styled letters become plain ones), combining marks dropped (accents), lower-cased, common
look-alikes folded (leetspeak digits and symbols, Cyrillic/Greek homoglyphs), every character that
is not a letter or digit removed (spaces, dots, zero-width joiners, emoji), and runs of one
character collapsed to one. ``"B.  4 d - W 0 0 r d"`` and ``"ｂáｄｗｏｒｄ"`` both become ``"badword"``.

Terms are then found as substrings of the text's skeleton with one Aho-Corasick automaton, so the
cost per comment is one pass over its characters whatever the number of terms. Substring matching
on a skeleton without spaces trades a few false positives (a term hidden across two words) for
catching spaced-out terms; keep terms specific.

``build_automaton`` is shared by both twins: only the scan loop is compiled.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

#: ASCII after lower-casing: leetspeak digits and symbols to the letter they stand for; every other
#: non-alphanumeric ASCII character is a separator ("").
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g"}
_LEET_SYMBOLS = {"@": "a", "$": "s", "!": "i", "|": "l", "+": "t"}


def _ascii_fold_table() -> tuple[str, ...]:
    table = []
    for code in range(128):
        ch = chr(code)
        if ch.isalnum():
            low = ch.lower()
            table.append(_LEET.get(low, low))
        else:
            table.append(_LEET_SYMBOLS.get(ch, ""))
    return tuple(table)


#: ``ASCII_FOLD[ord(c)]`` is what an ASCII character becomes in a skeleton ("" = dropped).
ASCII_FOLD: tuple[str, ...] = _ascii_fold_table()

#: Lower-case non-Latin letters that render like a Latin one (after NFKD and lower-casing).
HOMOGLYPHS: dict[str, str] = {
    "\u0430": "a",  # cyrillic small letter a
    "\u0432": "b",  # cyrillic small letter ve
    "\u0435": "e",  # cyrillic small letter ie
    "\u0451": "e",  # cyrillic small letter io
    "\u043a": "k",  # cyrillic small letter ka
    "\u043c": "m",  # cyrillic small letter em
    "\u043d": "h",  # cyrillic small letter en
    "\u043e": "o",  # cyrillic small letter o
    "\u0440": "p",  # cyrillic small letter er
    "\u0441": "c",  # cyrillic small letter es
    "\u0442": "t",  # cyrillic small letter te
    "\u0443": "y",  # cyrillic small letter u
    "\u0445": "x",  # cyrillic small letter ha
    "\u0455": "s",  # cyrillic small letter dze
    "\u0456": "i",  # cyrillic small letter byelorussian-ukrainian i
    "\u0458": "j",  # cyrillic small letter je
    "\u0501": "d",  # cyrillic small letter komi de
    "\u0261": "g",  # latin small letter script g
    "\u03b1": "a",  # greek small letter alpha
    "\u03b2": "b",  # greek small letter beta
    "\u03b5": "e",  # greek small letter epsilon
    "\u03b7": "n",  # greek small letter eta
    "\u03b9": "i",  # greek small letter iota
    "\u03ba": "k",  # greek small letter kappa
    "\u03bd": "v",  # greek small letter nu
    "\u03bf": "o",  # greek small letter omicron
    "\u03c1": "p",  # greek small letter rho
    "\u03c4": "t",  # greek small letter tau
    "\u03c5": "u",  # greek small letter upsilon
    "\u03c7": "x",  # greek small letter chi
}


def is_combining(code: int) -> bool:
    """Combining-mark blocks dropped from skeletons (accents left by NFKD)."""
    return (
        0x0300 <= code <= 0x036F
        or 0x1AB0 <= code <= 0x1AFF
        or 0x1DC0 <= code <= 0x1DFF
        or 0x20D0 <= code <= 0x20FF
        or 0xFE20 <= code <= 0xFE2F
    )


def fold_char(ch: str) -> str:
    """What one character of an NFKD-decomposed text becomes in a skeleton ("" = dropped)."""
    code = ord(ch)
    if code < 128:
        return ASCII_FOLD[code]
    if is_combining(code) or not ch.isalnum():
        return ""
    low = ch.lower()
    if len(low) != 1:
        # Full case mappings longer than one character (none survive NFKD today): keep as is.
        low = ch
    if ord(low) < 128:
        return ASCII_FOLD[ord(low)]
    return HOMOGLYPHS.get(low, low)


def skeleton(text: str) -> str:
    """The matching form of ``text`` (see the module docstring)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
    out: list[str] = []
    prev = ""
    for ch in text:
        folded = fold_char(ch)
        if folded and folded != prev:
            out.append(folded)
            prev = folded
    return "".join(out)


class Automaton:
    """Aho-Corasick automaton over the skeletons of a term list, as a dense goto table.

    Symbols: 0 is "a character no term contains" (it sends every state back to the root); the
    characters of the term skeletons are 1..n in sorted order. ``goto[state * width + symbol]`` is
    the next state; ``output[state]`` the smallest index of a term ending there, or -1.
    """

    __slots__ = ("goto", "output", "symbols", "terms", "width")

    def __init__(self, terms: Sequence[str]) -> None:
        self.terms: tuple[str, ...] = tuple(terms)
        skeletons = [skeleton(term) for term in self.terms]
        alphabet = sorted({ch for sk in skeletons for ch in sk})
        self.symbols: dict[str, int] = {ch: i + 1 for i, ch in enumerate(alphabet)}
        self.width: int = len(alphabet) + 1
        children: list[dict[int, int]] = [{}]
        output: list[int] = [-1]
        for index, sk in enumerate(skeletons):
            if not sk:
                continue
            state = 0
            for ch in sk:
                sym = self.symbols[ch]
                nxt = children[state].get(sym)
                if nxt is None:
                    nxt = len(children)
                    children[state][sym] = nxt
                    children.append({})
                    output.append(-1)
                state = nxt
            if output[state] == -1 or index < output[state]:
                output[state] = index
        width = self.width
        goto = [0] * (len(children) * width)
        fail = [0] * len(children)
        queue: list[int] = []
        for sym, first in children[0].items():
            goto[sym] = first
            queue.append(first)
        head = 0
        while head < len(queue):
            state = queue[head]
            head += 1
            inherited = output[fail[state]]
            if inherited != -1 and (output[state] == -1 or inherited < output[state]):
                output[state] = inherited
            base = state * width
            fail_base = fail[state] * width
            for sym in range(1, width):
                child = children[state].get(sym)
                if child is None:
                    goto[base + sym] = goto[fail_base + sym]
                else:
                    goto[base + sym] = child
                    fail[child] = goto[fail_base + sym]
                    queue.append(child)
        self.goto: list[int] = goto
        self.output: list[int] = output


class BlockScanner:
    """Finds block-list terms in texts (plain Python)."""

    __slots__ = ("_automaton",)

    def __init__(self, terms: Sequence[str]) -> None:
        self._automaton = Automaton(terms)

    @property
    def terms(self) -> tuple[str, ...]:
        return self._automaton.terms

    def first_match(self, text: str) -> int:
        """Index (in ``terms``) of the term whose match ends first in the skeleton, or -1."""
        auto = self._automaton
        goto = auto.goto
        output = auto.output
        symbols = auto.symbols
        width = auto.width
        state = 0
        for ch in skeleton(text):
            state = goto[state * width + symbols.get(ch, 0)]
            hit = output[state]
            if hit != -1:
                return hit
        return -1

    def scan_many(self, texts: Sequence[str]) -> list[int]:
        """``first_match`` of each text."""
        return [self.first_match(text) for text in texts]
