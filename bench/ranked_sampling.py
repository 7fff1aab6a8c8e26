"""Ranked vs random sampling at the 5 % tier (issue 12): who gets shown, and what it costs per tick.

    python -m bench.ranked_sampling                      # 20 000 comments, 50 000/s, 50 ms ticks
    python -m bench.ranked_sampling --json /tmp/r.json   # also write the numbers as JSON

A synthetic busy stream: ``--comments`` comments at ``--rate`` per second (the 5 % tier starts at
50 000/s), delivered in ticks of ``--tick-ms`` through the real delivery path of one edge
(``ChatService.delivery.deliver_many`` on embedded storage: reading each comment's signals, the
selection, publishing into the tick) once with ranked sampling and once with the hash sampler.
Authors (``--authors``, 4 000 viewers):

- 5 % flagged: half of their comments hit the flag list, the rest come from a flagged author;
- 20 % low reputation: 1 to 3 moderation strikes (in the MetaStore: read as on a remote edge);
- one spammer posting 10 % of all comments (clean text, no strikes, a follower: only the author
  cap holds them back);
- the rest: 30 % of them follow the channel, and 3 % of their comments reply to the broadcaster.

Before the measured comments one warm-up second runs at the same rate (a stream reaches the 5 %
tier after seconds above 50 000/s, so the selector has seen the stream; the MetaStore reads of
the authors' reputation are back). Measured: the shown share (the banner's "showing M/s" is 5 %
of the rate), the share of shown comments from flagged, low-reputation and spamming authors, the
largest single-author share, and CPU per tick: the whole ``deliver_many`` call of a tick with
each sampler (their difference is what ranking costs) and the selector alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from livechat.backends import Backends, open_backends
from livechat.config import AuthConfig, BackendConfig, ChatConfig, ModerationConfig, SamplingConfig
from livechat.ids import first_id_at
from livechat.protocol import encode_comment, unpackb
from livechat.services.chat import ChatService
from livechat.services.clock import ManualClock
from livechat.services.delivery import StoredPost
from livechat.services.ranking import RankedSelector, Signals, score

STREAM = "show"  # unregistered: its owner (the broadcaster) is the stream id
FLAG_TERM = "spoiler"
T0_MS = 1_765_000_000_000


class CountingOutbox:
    """The services' Outbox without sockets: keeps what went into the stream's tick."""

    def __init__(self) -> None:
        self.published: list[bytes] = []

    def send(self, conn_id: int, data: bytes, binary: bool = True) -> bool:
        return True

    def send_many(self, conn_ids: Sequence[int], data: bytes, binary: bool = True) -> int:
        return len(conn_ids)

    def send_batch(self, items: Sequence[tuple[int, bytes]], binary: bool = True) -> int:
        return len(items)

    def publish(self, stream: str, event: bytes, priority: bool = False) -> None:
        self.published.append(event)

    def set_state(self, stream: str, key: str, value: bytes) -> None:
        return None

    def subscribe(self, conn_id: int, stream: str) -> bool:
        return True

    def unsubscribe(self, conn_id: int, stream: str) -> bool:
        return True

    def close(self, conn_id: int, code: int = 1000, reason: str = "") -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Author:
    user: str
    kind: str  # "flagged", "low", "spammer", "normal"
    strikes: int = 0
    follower: bool = False


@dataclass(frozen=True, slots=True)
class Comment:
    comment_id: int
    author: Author
    payload: bytes
    signals: Signals


def population(authors: int, rng: random.Random) -> list[Author]:
    out = []
    for i in range(authors):
        roll = rng.random()
        if roll < 0.05:
            out.append(Author(f"f{i}", "flagged"))
        elif roll < 0.25:
            out.append(Author(f"l{i}", "low", strikes=rng.randint(1, 3)))
        else:
            out.append(Author(f"n{i}", "normal", follower=rng.random() < 0.3))
    return out


def comments(
    count: int,
    rate: float,
    start_ms: int,
    people: list[Author],
    spammer: Author,
    parent: int,
    rng: random.Random,
) -> list[Comment]:
    out = []
    for i in range(count):
        ms = start_ms + int(i * 1000 / rate)
        comment_id = first_id_at(ms) + 1 + i % 4000
        author = spammer if rng.random() < 0.10 else rng.choice(people)
        flagged = author.kind == "flagged"
        text = f"{FLAG_TERM} {i}" if flagged and rng.random() < 0.5 else f"comment {i}"
        reply = parent if author.kind == "normal" and rng.random() < 0.03 else None
        payload = encode_comment(comment_id, author.user, author.user, text, ms, reply, (), None)
        signals = Signals(flagged, author.strikes, author.follower, None, reply is not None)
        out.append(Comment(comment_id, author, payload, signals))
    return out


async def edge(
    data_dir: str, ranked: bool, people: list[Author]
) -> tuple[ChatService, ManualClock, Backends]:
    backends = await open_backends(
        BackendConfig(data_dir=data_dir, broker="memory://", registry="memory://"), edge_id="bench"
    )
    for author in [*people, Author("spammer", "spammer", follower=True)]:
        if author.strikes:
            await backends.meta.bump_reputation(author.user, "strikes", author.strikes)
        if author.follower:
            await backends.meta.follow(STREAM, author.user, 1.0)
    clock = ManualClock(wall=T0_MS / 1000)
    config = ChatConfig(
        auth=AuthConfig(hmac_secret="bench-secret-0123456789abcdef0123456789"),
        node_id=0,
        sampling=SamplingConfig(ranked=ranked),
        moderation=ModerationConfig(flagged_terms=(FLAG_TERM,)),
    )
    chat = ChatService(
        config, CountingOutbox(), log=backends.log, history=backends.history, meta=backends.meta, clock=clock
    )
    await chat.start(periodic=False)
    await chat.context.rooms.open(STREAM)
    return chat, clock, backends


def hot(chat: ChatService, clock: ManualClock, rate: float) -> None:
    sampler = chat.context.sampler
    start = clock.monotonic()
    for i in range(9):
        sampler.observe(STREAM, start + i * 0.25, int(rate * 0.25))
    clock.advance(2.25)
    assert sampler.tier(STREAM, clock.monotonic()).keep_ppm == 50_000, "not at the 5 % tier"


def ticks(items: list[Comment], per_tick: int) -> list[list[Comment]]:
    return [items[i : i + per_tick] for i in range(0, len(items), per_tick)]


async def run_edge(
    ranked: bool,
    people: list[Author],
    parent_id: int,
    warm: list[Comment],
    measured: list[Comment],
    args: argparse.Namespace,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        chat, clock, backends = await edge(data_dir, ranked, people)
        try:
            ctx = chat.context
            outbox = ctx.outbox
            assert isinstance(outbox, CountingOutbox)
            # The broadcaster's question the "replies to the broadcaster" answer (tier 0: shown).
            parent = encode_comment(parent_id, STREAM, "Host", "ask me", T0_MS, None, (), "bc")
            chat.delivery.deliver_many([StoredPost(STREAM, parent_id, STREAM, parent, ())])
            hot(chat, clock, args.rate)
            per_tick = int(args.rate * args.tick_ms / 1000)
            for tick in ticks(warm, per_tick):
                await ctx.background.drain()  # as the loop runs between batches: MetaStore reads
                chat.delivery.deliver_many(
                    [StoredPost(STREAM, c.comment_id, c.author.user, c.payload, ()) for c in tick]
                )
                clock.advance(args.tick_ms / 1000)
            await ctx.background.drain()
            outbox.published.clear()
            cpu: list[float] = []
            for tick in ticks(measured, per_tick):
                await ctx.background.drain()
                posts = [StoredPost(STREAM, c.comment_id, c.author.user, c.payload, ()) for c in tick]
                started = time.process_time_ns()
                chat.delivery.deliver_many(posts)
                cpu.append((time.process_time_ns() - started) / 1000)
                clock.advance(args.tick_ms / 1000)
            shown = {int(unpackb(p)["id"]) for p in outbox.published}
            return summary([c for c in measured if c.comment_id in shown], len(measured)) | {
                "deliver_us_per_tick": statistics.median(cpu),
                "comments_per_tick": per_tick,
            }
        finally:
            await chat.aclose()
            await backends.aclose()


def summary(shown: list[Comment], total: int) -> dict[str, Any]:
    by_author = Counter(c.author.user for c in shown)
    top_user, top_count = by_author.most_common(1)[0] if by_author else ("", 0)
    n = max(len(shown), 1)
    return {
        "shown": len(shown),
        "shown_share": len(shown) / total,
        "flagged_share": sum(c.author.kind == "flagged" for c in shown) / n,
        "low_rep_share": sum(c.author.kind == "low" for c in shown) / n,
        "spammer_share": sum(c.author.kind == "spammer" for c in shown) / n,
        "largest_author": top_user,
        "largest_author_share": top_count / n,
    }


def selector_cost(items: list[Comment], per_tick: int, repeats: int) -> float:
    """Median CPU µs per tick of scoring and ``RankedSelector.select`` alone."""
    best: list[float] = []
    for _ in range(repeats):
        selector = RankedSelector(SamplingConfig().rank_window_ms, SamplingConfig().author_cap)
        for tick in ticks(items, per_tick):
            started = time.process_time_ns()
            authors = [c.author.user for c in tick]
            scores = [score(c.signals) for c in tick]
            selector.select_many(
                STREAM, 50_000, [c.comment_id for c in tick], authors, scores, [False] * len(tick)
            )
            best.append((time.process_time_ns() - started) / 1000)
    return statistics.median(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comments", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=50_000.0)
    parser.add_argument("--tick-ms", type=float, default=50.0)
    parser.add_argument("--authors", type=int, default=4_000)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    people = population(args.authors, rng)
    # A follower with no strikes: quality alone does not push them out, the author cap has to.
    spammer = Author("spammer", "spammer", follower=True)
    warm_n = int(args.rate)  # one second
    parent_id = first_id_at(T0_MS)  # before every other comment
    warm = comments(warm_n, args.rate, T0_MS + 1, people, spammer, parent_id, rng)
    measured = comments(args.comments, args.rate, T0_MS + 1001, people, spammer, parent_id, rng)
    volume = summary(measured, len(measured))
    results: dict[str, Any] = {
        "command": "python -m bench.ranked_sampling "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "json"),
        "volume": {k: volume[k] for k in ("flagged_share", "low_rep_share", "spammer_share")},
        "random": asyncio.run(run_edge(False, people, parent_id, warm, measured, args)),
        "ranked": asyncio.run(run_edge(True, people, parent_id, warm, measured, args)),
        "selector_us_per_tick": selector_cost(warm + measured, int(args.rate * args.tick_ms / 1000), 3),
    }
    print(report(results))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)


def report(r: dict[str, Any]) -> str:
    def pct(x: float) -> str:
        return f"{100 * x:.1f} %"

    rows = [
        ("shown / all comments (banner: 5 %)", "shown_share"),
        ("shown from flagged authors", "flagged_share"),
        ("shown from low-reputation authors", "low_rep_share"),
        ("shown from the spammer", "spammer_share"),
        ("largest single-author share", "largest_author_share"),
    ]
    lines = [f"`{r['command']}`", "", "| | volume | random (hash) | ranked |", "|---|---|---|---|"]
    for label, key in rows:
        vol = pct(r["volume"][key]) if key in r["volume"] else ""
        lines.append(f"| {label} | {vol} | {pct(r['random'][key])} | {pct(r['ranked'][key])} |")
    per_tick = r["ranked"]["comments_per_tick"]
    lines.append(
        f"| CPU per tick of {per_tick} comments: deliver_many | | {r['random']['deliver_us_per_tick']:.0f} µs"
        f" | {r['ranked']['deliver_us_per_tick']:.0f} µs |"
    )
    lines.append(f"| CPU per tick: scoring + selection alone | | | {r['selector_us_per_tick']:.0f} µs |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
