"""The client SDK's pure parts (backoff, dedupe, event decoding, token subject) and the web page's
files as the real edge serves them."""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from livechat import _edge
from livechat.client import (
    Backoff,
    Banned,
    Comment,
    Deleted,
    Gap,
    Highlighted,
    ModerationQueue,
    ModesChanged,
    Pinned,
    Purged,
    Snapshot,
    TopPage,
    Unbanned,
    UnknownEvent,
    token_subject,
)
from livechat.client.events import state_changed, stream_event
from livechat.client.streams import SeenIds, StreamView
from livechat.config import ClientConfig, EdgeConfig, LimitsConfig
from livechat.server import webpage

from tests.e2e.conftest import free_port


def test_backoff_ceiling_doubles_to_the_cap_and_draws_inside_it() -> None:
    backoff = Backoff(0.25, 15.0, 2.0, random.Random(7))
    assert [backoff.ceiling(n) for n in range(9)] == [0.25, 0.5, 1, 2, 4, 8, 15, 15, 15]
    assert backoff.ceiling(10_000) == 15.0
    delays = [backoff.next_delay() for _ in range(2000)]
    assert all(0 <= d <= backoff.ceiling(n) for n, d in enumerate(delays))
    # Full jitter: late draws spread over the whole [0, cap] window, not bunched at the cap.
    late = delays[100:]
    assert min(late) < 1.5 and max(late) > 13.5
    assert 6.0 < sum(late) / len(late) < 9.0
    assert backoff.attempt == 2000
    backoff.reset()
    assert backoff.attempt == 0 and backoff.next_delay() <= 0.25


def test_backoff_is_reproducible_with_a_seed_and_refuses_bad_settings() -> None:
    a = Backoff(0.1, 5, 2, random.Random(1))
    b = Backoff(0.1, 5, 2, random.Random(1))
    assert [a.next_delay() for _ in range(10)] == [b.next_delay() for _ in range(10)]
    for initial, cap, factor in ((0, 1, 2), (2, 1, 2), (0.1, 1, 0.5)):
        with pytest.raises(ValueError):
            Backoff(initial, cap, factor)


def test_seen_ids_drop_duplicates_and_forget_the_oldest() -> None:
    seen = SeenIds(3)
    assert [seen.add(i) for i in (1, 2, 1, 3, 4)] == [True, True, False, True, True]
    assert 1 not in seen and 4 in seen and len(seen) == 3
    assert seen.add(1)
    with pytest.raises(ValueError):
        SeenIds(0)


def test_stream_view_rejoins_from_the_newest_id_and_at_least_one() -> None:
    view = StreamView("s", SeenIds(10))
    assert view.rejoin_from() is None
    view.joined = True
    assert view.rejoin_from() == 1
    view.saw(50)
    view.saw(40)
    assert view.rejoin_from() == 50


def test_every_event_kind_decodes() -> None:
    comment = {
        "k": "c",
        "id": 9,
        "u": "al",
        "n": "Al",
        "x": "hi @bo",
        "ts": 5,
        "r": 3,
        "m": ["bo"],
        "b": "mod",
    }
    assert stream_event("s", comment, "direct") == Comment(
        "s", 9, "al", "Al", "hi @bo", 5, 3, ("bo",), "mod", "direct"
    )
    assert stream_event("s", {"k": "del", "id": 9}, "tick") == Deleted("s", 9)
    shadow = stream_event("s", {"k": "del", "id": 9, "keep": "al"}, "tick")
    assert isinstance(shadow, Deleted) and not shadow.hides_for("al") and shadow.hides_for("bo")
    assert stream_event("s", {"k": "purge", "u": "al"}, "tick") == Purged("s", "al")
    assert stream_event("s", {"k": "ban", "u": "al", "until": None}, "tick") == Banned("s", "al", None)
    assert stream_event("s", {"k": "ban", "u": "al", "until": 77}, "tick") == Banned("s", "al", 77)
    assert stream_event("s", {"k": "unban", "u": "al"}, "tick") == Unbanned("s", "al")
    assert stream_event("s", {"k": "pin", "c": None}, "tick") == Pinned("s", None)
    pinned = stream_event("s", {"k": "pin", "c": comment}, "tick")
    assert isinstance(pinned, Pinned) and pinned.comment is not None and pinned.comment.id == 9
    assert stream_event("s", {"k": "hl", "id": 9}, "tick") == Highlighted("s", 9)
    modes = stream_event("s", {"k": "modes", "slow": 30, "fo": 0, "off": True}, "tick")
    assert isinstance(modes, ModesChanged)
    assert (modes.modes.slow_s, modes.modes.followers_min_age_s, modes.modes.comments_off) == (30, 0, True)
    assert stream_event("s", {"k": "gap"}, "tick") == Gap("s")
    assert isinstance(stream_event("s", {"k": "future-thing", "z": 1}, "tick"), UnknownEvent)


def test_state_slots_and_snapshot_decode() -> None:
    changed = state_changed(
        "s", {"n": {"c": 3, "v": 2}, "likes": {9: 4}, "tier": {"lvl": 1, "pct": 50.0, "rate": 6000}}
    )
    assert changed.counts is not None and (changed.counts.comments, changed.counts.viewers) == (3, 2)
    assert changed.likes == {9: 4} and changed.reactions is None
    assert changed.tier is not None and changed.tier.moving_fast and changed.tier.percent_broadcast == 50.0
    raw: dict[str, Any] = {
        "t": "snapshot", "s": "s", "role": "moderator",
        "recent": [{"k": "c", "id": 1, "u": "a", "x": "x", "ts": 1}],
        "pin": None, "hl": [1], "n": {"c": 1, "v": 1}, "rx": {"heart": 2}, "likes": {1: 1},
        "tier": {"lvl": 0, "pct": 100.0, "rate": 0.0}, "modes": {"slow": 0, "fo": None, "off": False},
        "last": 1,
    }  # fmt: skip
    first = Snapshot.from_wire(raw)
    assert not first.recovered and first.role == "moderator" and first.recent[0].name == "a"
    assert first.likes == {1: 1} and first.reactions == {"heart": 2} and first.highlights == (1,)
    recovered = Snapshot.from_wire({**raw, "gap": False, "missed": [raw["recent"][0]], "del": [7]})
    assert recovered.recovered and not recovered.gap and recovered.deleted == (7,)
    assert recovered.missed[0].source == "missed"
    assert Snapshot.from_wire({**raw, "gap": True}).gap


def test_top_page_and_moderation_queue_decode() -> None:
    c1 = {"k": "c", "id": 11, "u": "ann", "n": "Ann", "x": "best", "ts": 5, "b": "mod"}
    c2 = {"k": "c", "id": 12, "u": "bo", "x": "next", "ts": 6, "r": 11}
    top = TopPage.from_wire({"t": "top", "rid": 3, "s": "s", "items": [c1, c2], "scores": [4, 2]})
    assert [(c.id, c.name, c.badge, c.reply_to) for c in top.items] == [
        (11, "Ann", "mod", None),
        (12, "bo", None, 11),
    ]
    assert top.stream == "s" and top.scores == (4, 2) and top.items[0].stream == "s"
    # A score list that does not match the items never shifts a score onto another comment.
    assert TopPage.from_wire({"s": "s", "items": [c1, c2], "scores": [4]}).scores == (4, 0)
    assert TopPage.from_wire({"s": "s", "items": [c1], "scores": [4, 2]}).scores == (4,)
    assert TopPage.from_wire({"s": "s"}) == TopPage("s", (), ())
    queue = ModerationQueue.from_wire(
        {
            "t": "queue", "s": "s", "more": True,
            "flagged": [{"id": 11, "u": "ann", "c": c1, "reason": "3 reports", "score": -1.0, "ts": 7}],
            "reports": [{"id": 2, "by": "cy", "u": "ann", "c": 11, "reason": "rude", "ts": 8},
                        {"id": 1, "by": "cy", "u": "bo", "c": None, "reason": "", "ts": 6}],
        }
    )  # fmt: skip
    assert queue.more and queue.flagged[0].comment.text == "best" and queue.flagged[0].score == -1.0
    assert [(r.report_id, r.user, r.comment_id) for r in queue.reports] == [(2, "ann", 11), (1, "bo", None)]


def test_token_subject_reads_sub_without_verifying() -> None:
    payload = base64.urlsafe_b64encode(json.dumps({"sub": "zoë"}).encode()).rstrip(b"=").decode()
    assert token_subject(f"h.{payload}.sig") == "zoë"
    assert token_subject("not-a-jwt") is None and token_subject(None) is None
    assert token_subject("a.!!!.c") is None


@pytest.fixture
def edge() -> Iterator[_edge.Edge]:
    core = _edge.Edge(dataclasses.replace(EdgeConfig(), port=free_port(), io_threads=1).to_core())
    core.start()
    yield core
    core.stop(100)


def get(port: int, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def test_the_edge_serves_every_page_file_and_the_generated_config(edge: _edge.Edge) -> None:
    limits = LimitsConfig(max_text_chars=280)
    client = ClientConfig(reconnect_initial_s=0.5, reconnect_max_s=20)
    paths = webpage.install(edge, limits, client)
    for path, (name, content_type) in webpage.PAGE_FILES.items():
        assert get(edge.port, path + "?token=x&stream=y") == (200, content_type, webpage.read_file(name))
    status, content_type, body = get(edge.port, webpage.CONFIG_PATH)
    assert status == 200 and content_type.startswith("text/javascript")
    served = json.loads(body.decode().split("Object.freeze(", 1)[1].rsplit(");", 1)[0])
    assert served == webpage.page_config(client, limits)
    assert (
        served["maxTextChars"] == 280
        and served["reconnectInitialMs"] == 500
        and served["reconnectMaxMs"] == 20000
    )
    assert set(paths) == {*webpage.PAGE_FILES, webpage.CONFIG_PATH}
    # Every module the page imports is served.
    for name in ("app.js", "livechat-client.js"):
        source = webpage.read_file(name).decode()
        for line in source.splitlines():
            if line.startswith("import ") and " from " in line:
                target = "/" + line.split('"')[1].removeprefix("./")
                assert target in paths, f"{name} imports {target}, which is not served"
    assert get(edge.port, "/nope")[0] == 426
