# ruff: noqa: RUF001  (look-alike characters are the test data)
"""The compiled ``livechat._speedups`` and its plain-Python twins in ``livechat._pure`` agree.

Both are imported directly: these tests FAIL when the Cython module is not built
(``python pyext/setup.py``), they never fall back.
"""

from __future__ import annotations

import os
import string
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from livechat import _pure as pure
from livechat import _speedups as compiled
from livechat import fastpath

# Text that exercises every branch of the folding: ASCII letters/digits/leet symbols, spacing,
# accents (combining and precomposed), fullwidth and styled letters, Cyrillic/Greek look-alikes,
# emoji, zero-width characters, and anything else hypothesis finds.
_INTERESTING = (
    string.ascii_letters
    + string.digits
    + " .-_@$!|+*\t"
    + "àéîõüçñßİıǅﬁ"
    + "\u0301\u0308\u200b\u200d\ufe0f"
    + "ＡＢＣａｂｃ０１２"
    + "𝐚𝐛𝐜𝒜"
    + "аеорсхуіјѕԁαβεηικνορτυχ"
    + "😀🔥👍🏽❤"
)
texts = st.one_of(st.text(alphabet=_INTERESTING, max_size=80), st.text(max_size=40))
terms = st.lists(
    st.text(alphabet=string.ascii_lowercase + "0134$@ аеоαο", min_size=1, max_size=6), max_size=12
)


@settings(max_examples=600, deadline=None)
@given(texts)
def test_skeleton_agrees(text: str) -> None:
    assert compiled.skeleton(text) == pure.skeleton(text)


@settings(max_examples=400, deadline=None)
@given(terms, st.lists(texts, max_size=8))
def test_block_scanner_agrees_and_finds_exactly_the_substrings(
    term_list: list[str], text_list: list[str]
) -> None:
    fast = compiled.BlockScanner(term_list)
    slow = pure.BlockScanner(term_list)
    assert fast.terms == slow.terms == tuple(term_list)
    assert fast.scan_many(text_list) == slow.scan_many(text_list)
    skeletons = [pure.skeleton(term) for term in term_list]
    for text, found in zip(text_list, fast.scan_many(text_list), strict=True):
        haystack = pure.skeleton(text)
        # Oracle: a hit iff some non-empty term skeleton is a substring of the text's skeleton.
        expected = any(sk and sk in haystack for sk in skeletons)
        assert (found >= 0) == expected
        if found >= 0:
            assert skeletons[found] in haystack


@pytest.mark.parametrize("impl", [compiled, pure], ids=["cython", "pure"])
@pytest.mark.parametrize(
    "text",
    [
        "badword",
        "B A D W O R D",
        "b.a.d.w.o.r.d",
        "b4dw0rd",
        "BAAAADWORD!!!",
        "ｂａｄｗｏｒｄ",
        "bádwörd",
        "b\u200badword",
        "bаdwоrd",  # Cyrillic a and o
        "𝐛𝐚𝐝𝐰𝐨𝐫𝐝",
        "you are a b@dw0rd",
    ],
)
def test_obfuscations_are_caught(impl: object, text: str) -> None:
    scanner = impl.BlockScanner(["other", "badword"])  # type: ignore[attr-defined]
    assert scanner.first_match(text) == 1
    assert scanner.first_match("a good comment") == -1


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2", "u3", ("s", 1), 7]),
            st.integers(0, 2),
            st.floats(0, 30, allow_nan=False),
        ),
        max_size=60,
    ),
    st.sampled_from([[(10 / 60, 10), (100 / 60, 100), (0, 0)], [(0.5, 1), (2.0, 3), (1e-9, 1)]]),
)
def test_token_table_agrees(ops: list[tuple[object, int, float]], classes: list[tuple[float, float]]) -> None:
    fast = compiled.TokenTable(classes)
    slow = pure.TokenTable(classes)
    now = 0.0
    for key, cls, step in ops:
        now += step
        assert fast.allow(key, cls, now) == slow.allow(key, cls, now)
        assert fast.retry_after(key, cls, now) == slow.retry_after(key, cls, now)
        assert len(fast) == len(slow)
    keys = [key for key, _, _ in ops]
    cls_bytes = bytes(cls for _, cls, _ in ops)
    assert fast.allow_many(keys, cls_bytes, now + 1) == slow.allow_many(keys, cls_bytes, now + 1)
    assert fast.prune(now + 50) == slow.prune(now + 50)
    assert len(fast) == len(slow)


def test_token_table_rejects_bad_input() -> None:
    for impl in (compiled, pure):
        table = impl.TokenTable([(1.0, 1.0)])
        with pytest.raises(IndexError):
            table.allow("k", 1, 0.0)
        with pytest.raises(ValueError):
            table.allow_many(["a"], b"", 0.0)
        with pytest.raises(ValueError):
            impl.TokenTable([])
        with pytest.raises(ValueError):
            impl.TokenTable([(1.0, 0.5)])


def test_token_table_grows_past_initial_capacity() -> None:
    fast = compiled.TokenTable([(1.0, 2.0)])
    slow = pure.TokenTable([(1.0, 2.0)])
    keys = [f"user-{i}" for i in range(5000)]
    cls = bytes(len(keys))
    assert fast.allow_many(keys, cls, 1.0) == slow.allow_many(keys, cls, 1.0) == bytearray(b"\x01" * 5000)
    assert fast.prune(10.0) == slow.prune(10.0) == 5000
    assert fast.allow_many(keys, cls, 11.0) == bytearray(b"\x01" * 5000)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=50), st.integers(-5, 2_000_000))
def test_sampling_agrees(ids: list[int], keep_ppm: int) -> None:
    assert compiled.sample_mask(ids, keep_ppm) == pure.sample_mask(ids, keep_ppm)
    for comment_id in ids:
        assert compiled.mix64(comment_id) == pure.mix64(comment_id)
        assert compiled.keep_sample(comment_id, keep_ppm) == pure.keep_sample(comment_id, keep_ppm)


def test_sampling_out_of_range_ids_raise_in_both() -> None:
    for impl in (compiled, pure):
        with pytest.raises(OverflowError):
            impl.mix64(-1)
        with pytest.raises(OverflowError):
            impl.mix64(2**64)


def test_sampling_keeps_the_requested_share() -> None:
    ids = list(range(1 << 40, (1 << 40) + 200_000))
    for ppm in (50_000, 100_000, 500_000):
        kept = sum(compiled.sample_mask(ids, ppm))
        assert abs(kept / len(ids) - ppm / 1_000_000) < 0.005
    # A higher share keeps a superset of a lower one.
    low = compiled.sample_mask(ids[:5000], 50_000)
    high = compiled.sample_mask(ids[:5000], 500_000)
    assert all(h >= lo for lo, h in zip(low, high, strict=True))


def test_fastpath_uses_the_compiled_module_unless_told_not_to() -> None:
    if os.environ.get("LIVECHAT_PURE") == "1":
        assert not fastpath.COMPILED and fastpath.TokenTable is pure.TokenTable
    else:
        assert fastpath.COMPILED and fastpath.TokenTable is compiled.TokenTable


def test_package_works_without_the_compiled_module() -> None:
    """With ``livechat._speedups`` unimportable the services run on the pure twins."""
    script = """
import sys
sys.modules["livechat._speedups"] = None  # as if never built
from livechat import fastpath
from livechat.services.moderation import Rules
assert not fastpath.COMPILED
assert Rules(["badword"], []).check("b 4 d w 0 r d")[1] == "badword"
print("pure-ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "LIVECHAT_PURE"}
    command = [sys.executable, "-c", script]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pure-ok"
