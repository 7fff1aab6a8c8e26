# ruff: noqa: RUF001  (fullwidth letters are part of the benchmark corpus)
"""Why ``livechat._speedups`` exists: each compiled loop against its plain-Python twin.

``pytest bench/test_speedups.py`` shows both sides per loop (group = the loop) and the
``test_speedup`` tests assert the compiled side is at least MIN_SPEEDUP times faster in thread CPU
time (best of alternating runs, so a busy machine cannot fake or hide a gain). Inputs are one batch of
what the comment path sees: 1 000 comments, 200 block-list terms, 1 000 posting users.
"""

from __future__ import annotations

import random
import time
import timeit
from collections.abc import Callable
from typing import Any

import pytest
from livechat import _pure as pure
from livechat import _speedups as compiled

MIN_SPEEDUP = 5.0
IMPLS = [pytest.param(compiled, id="cython"), pytest.param(pure, id="pure")]

_WORDS = (
    "lol gg nice play wow hello chat what is this stream best moment ever love it when does the next "
    "game start who won that round omg insane clip that please pin this first time here hi from brazil"
).split()
_EXTRAS = ["🔥", "😂", "❤️", "👍🏽", "GG!!!", "café", "ｗｏｗ", "naïve", "日本", "@streamer", "...", "?!"]


def _corpus(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(2, 25))]
        for _ in range(rng.randint(0, 3)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(_EXTRAS))
        out.append(" ".join(words))
    return out


def _terms(n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(5, 9))) for _ in range(n)]


COMMENTS = _corpus(1000)
TERMS = _terms(200)
USERS = [f"user-{i}" for i in range(1000)]
CLASSES = bytes(i % 3 for i in range(1000))
IDS = [(1 << 50) + i * 4099 for i in range(4096)]
TOKEN_CLASSES = [(10 / 60, 10.0), (100 / 60, 100.0), (0.0, 0.0)]


def _blocklist(impl: Any) -> Callable[[], object]:
    scanner = impl.BlockScanner(TERMS)
    return lambda: scanner.scan_many(COMMENTS)


def _skeleton(impl: Any) -> Callable[[], object]:
    skeleton = impl.skeleton
    return lambda: [skeleton(text) for text in COMMENTS]


def _tokens(impl: Any) -> Callable[[], object]:
    table = impl.TokenTable(TOKEN_CLASSES)
    clock = [0.0]

    def run() -> object:
        clock[0] += 0.5
        return table.allow_many(USERS, CLASSES, clock[0])

    return run


def _sampling(impl: Any) -> Callable[[], object]:
    return lambda: impl.sample_mask(IDS, 50_000)


LOOPS = {
    "blocklist_scan_1000_comments_200_terms": _blocklist,
    "skeleton_1000_comments": _skeleton,
    "token_buckets_1000_users": _tokens,
    "sample_mask_4096_ids": _sampling,
}


def _cpu_per_call(
    fast: Callable[[], object], slow: Callable[[], object], rounds: int = 15
) -> tuple[float, float]:
    """Best thread-CPU seconds per call of each side, measured alternately (A, B, A, B, ...).

    Thread CPU time does not count time spent waiting for a core, so other processes on a busy
    machine cannot fake or hide a gain; alternating exposes both sides to the same conditions.
    """
    timers = []
    for fn in (fast, slow):
        fn()  # warm up (and grow tables) before timing
        once = timeit.Timer(fn, timer=time.thread_time).timeit(number=1)
        number = max(1, int(0.01 / max(once, 1e-7)))
        timers.append((timeit.Timer(fn, timer=time.thread_time), number))
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for side, (timer, number) in enumerate(timers):
            best[side] = min(best[side], timer.timeit(number=number) / number)
    return best[0], best[1]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("loop", list(LOOPS))
def test_loop(benchmark: Any, loop: str, impl: Any) -> None:
    benchmark.group = loop
    fn = LOOPS[loop](impl)
    result = benchmark(fn)
    assert result is not None


@pytest.mark.parametrize("loop", list(LOOPS))
def test_speedup(loop: str) -> None:
    fast = LOOPS[loop](compiled)
    slow = LOOPS[loop](pure)
    assert fast() == slow(), "the twins disagree on the benchmark input"
    fast_s, slow_s = _cpu_per_call(fast, slow)
    ratio = slow_s / fast_s
    print(f"{loop}: cython is {ratio:.1f}x faster than the pure twin")
    assert ratio >= MIN_SPEEDUP, f"{loop}: only {ratio:.1f}x"
