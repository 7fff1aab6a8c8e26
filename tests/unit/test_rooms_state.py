"""Recent buffer (snapshots, recovery) and engagement aggregation."""

from __future__ import annotations

from chat_harness import RecordingOutbox
from hypothesis import given
from hypothesis import strategies as st
from livechat.config import RoomConfig
from livechat.protocol import StateKey
from livechat.services.engagement import Engagement
from livechat.services.recent import RecentBuffer


def test_recent_buffer_evicts_and_raises_floor() -> None:
    buf = RecentBuffer(3, floor=0)
    for cid in (10, 20, 30, 40):
        buf.append(cid, f"u{cid}", bytes([cid]))
    assert [cid for cid, _ in buf.latest(10)] == [20, 30, 40]
    assert buf.floor == 10
    assert buf.after(10, 10) == [bytes([20]), bytes([30]), bytes([40])]
    assert buf.after(5, 10) is None  # older than memory
    assert buf.after(20, 1) is None  # more than the limit
    assert buf.after(40, 10) == []


def test_recent_buffer_orders_late_arrivals_and_removes() -> None:
    buf = RecentBuffer(10, floor=0)
    for cid in (10, 30, 20):
        buf.append(cid, "u1" if cid != 20 else "u2", bytes([cid]))
    assert [cid for cid, _ in buf.latest(3)] == [10, 20, 30]
    assert buf.newest_id() == 30
    assert buf.remove_user("u1") == [10, 30]
    assert buf.remove(20) and not buf.remove(20)
    assert len(buf) == 0


def test_recent_buffer_load() -> None:
    buf = RecentBuffer(3, floor=999)
    buf.load([(30, "u", b"c"), (20, "u", b"b"), (10, "u", b"a")], complete=False)
    assert buf.floor == 10 and buf.after(10, 5) == [b"b", b"c"]
    whole = RecentBuffer(3, floor=999)
    whole.load([(30, "u", b"c")], complete=True)
    assert whole.floor == 0 and whole.after(0, 5) == [b"c"]


async def test_engagement_folds_into_state_slots() -> None:
    outbox = RecordingOutbox()
    engagement = Engagement(RoomConfig(tracked_like_comments=2))
    for _ in range(3):
        engagement.react("s", "heart")
    engagement.react("s", "wow")
    engagement.viewers("s", 2)
    engagement.comment_posted("s", 1)
    engagement.comment_posted("s", 2)
    assert engagement.like("s", 1, "a", True) is True
    assert engagement.like("s", 1, "a", True) is False  # idempotent
    assert engagement.like("s", 1, "b", True) is True
    assert engagement.like("s", 99, "a", True) is None  # unknown
    assert await engagement.flush(outbox) == 1
    assert outbox.state_value("s", StateKey.REACTIONS) == {
        "heart": 3,
        "laugh": 0,
        "wow": 1,
        "sad": 0,
        "angry": 0,
    }
    assert outbox.state_value("s", StateKey.LIKES) == {1: 2}
    assert outbox.state_value("s", StateKey.COUNTS) == {"c": 2, "v": 2}
    # Nothing changed: nothing written.
    outbox.state.clear()
    assert await engagement.flush(outbox) == 0 and outbox.state == {}
    engagement.like("s", 1, "a", False)
    engagement.comment_posted("s", 3)  # evicts comment 1 (tracked_like_comments=2)
    await engagement.flush(outbox)
    assert outbox.state_value("s", StateKey.LIKES) == {1: 0}
    assert engagement.like("s", 1, "c", True) is None
    engagement.forget("s", [2])
    assert engagement.snapshot("s", [3])[StateKey.COUNTS] == {"c": 2, "v": 2}


def test_recent_buffer_recovers_what_arrived_after_the_last_seen_id() -> None:
    """An id minted earlier can reach the stream later (another edge's append took longer): a
    viewer who saw 30 has not seen 20 if 20 arrived after 30, so recovery after 30 includes it."""
    buf = RecentBuffer(10, floor=0)
    for cid in (10, 30, 20, 40):
        buf.append(cid, "u", bytes([cid]))
    assert buf.after(30, 10) == [bytes([20]), bytes([40])]
    assert buf.after(20, 10) == [bytes([40])]
    assert buf.after(25, 10) == [bytes([30]), bytes([40])]  # unknown id: newer ids
    buf.remove(30)
    assert buf.after(30, 10) == [bytes([20]), bytes([40])]  # a deleted comment still marks a place


@given(
    st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=120),
    st.integers(min_value=1, max_value=12),
)
def test_out_of_order_appends_keep_the_newest_in_id_order(ids: list[int], capacity: int) -> None:
    """Appends slotted in from the end agree with a sorted model: the newest ``capacity`` ids
    kept in order, and ``floor`` the newest one evicted."""
    buf = RecentBuffer(capacity, floor=0)
    kept: set[int] = set()
    floor = 0
    for cid in ids:
        buf.append(cid, "u", str(cid).encode())
        kept.add(cid)
        if len(kept) > capacity:
            oldest = min(kept)
            kept.discard(oldest)
            floor = max(floor, oldest)
    assert [cid for cid, _ in buf.latest(capacity)] == sorted(kept)
    assert buf.newest_id() == max(kept)
    assert buf.floor == floor


async def test_a_big_streams_totals_are_paced_by_its_viewers() -> None:
    """20 000 viewers here, 10 000 state sends a second: changed totals go out every 2 s at most,
    the latest value when they go; a small stream every flush."""
    outbox = RecordingOutbox()
    engagement = Engagement(RoomConfig(state_sends_per_s=10_000))
    engagement.viewers("big", 20_000)
    engagement.viewers("small", 10)
    assert await engagement.flush(outbox, now=100.0) == 2
    assert outbox.state_value("big", StateKey.COUNTS) == {"c": 0, "v": 20_000}
    engagement.viewers("big", 1)
    engagement.viewers("small", 1)
    assert await engagement.flush(outbox, now=100.25) == 1  # the small stream only
    assert outbox.state_value("small", StateKey.COUNTS) == {"c": 0, "v": 11}
    engagement.viewers("big", 1)
    assert await engagement.flush(outbox, now=101.9) == 0
    assert outbox.state_value("big", StateKey.COUNTS) == {"c": 0, "v": 20_000}
    assert await engagement.flush(outbox, now=102.0) == 1
    assert outbox.state_value("big", StateKey.COUNTS) == {"c": 0, "v": 20_002}
