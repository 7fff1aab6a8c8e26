"""The fault verdict can fail: each kind of harm, made by hand, is reported (no services needed)."""

from __future__ import annotations

from tests.faults.load import Ack, Edges, Poster, Seen, Viewer
from tests.faults.verdict import judge

SECRET = "x" * 32
STREAM = "s"


def _poster(acks: list[tuple[str, int]]) -> Poster:
    poster = Poster("p", STREAM, Edges(["ws://127.0.0.1:1/live"]), 0, SECRET)
    poster.acks = [Ack(cmid, cid, 0.0, 1.0, False) for cmid, cid in acks]
    return poster


def _viewer(live: list[int], missed: list[int] = ()) -> Viewer:  # type: ignore[assignment]
    viewer = Viewer("v", STREAM, Edges(["ws://127.0.0.1:1/live"]), 0, SECRET)
    viewer.live = [list(live)]
    for cid in live:
        viewer.shown.setdefault(cid, []).append(Seen("live", 0))
    for cid in missed:
        viewer.shown.setdefault(cid, []).append(Seen("missed", 0))
    return viewer


LOG = {STREAM: [(1, "a"), (2, "b"), (3, "c")]}
ACKS = [("a", 1), ("b", 2), ("c", 3)]
HISTORY = {STREAM: {1, 2, 3}}


def test_a_clean_run_passes() -> None:
    assert judge([_poster(ACKS)], [_viewer([1, 2, 3])], LOG, HISTORY).failures() == []


def test_an_acked_comment_missing_from_the_log_is_lost() -> None:
    verdict = judge([_poster([*ACKS, ("d", 4)])], [_viewer([1, 2, 3])], LOG, HISTORY)
    assert verdict.lost == ["d=4"] and verdict.failures()


def test_an_acked_comment_missing_from_history_is_reported() -> None:
    verdict = judge([_poster(ACKS)], [_viewer([1, 2, 3])], LOG, {STREAM: {1, 2}})
    assert verdict.history_missing == ["c=3"] and verdict.failures()


def test_a_cmid_stored_twice_is_a_duplicate() -> None:
    log = {STREAM: [*LOG[STREAM], (4, "c")]}
    verdict = judge([_poster(ACKS)], [_viewer([1, 2, 3, 4])], log, HISTORY)
    assert verdict.log_duplicates == ["c"] and verdict.failures()


def test_a_comment_shown_twice_live_and_missed_is_a_duplicate() -> None:
    verdict = judge([_poster(ACKS)], [_viewer([1, 2, 3], missed=[3])], LOG, HISTORY)
    assert verdict.shown_twice == 1 and verdict.failures()


def test_a_viewer_that_never_saw_an_acked_comment_has_a_gap() -> None:
    verdict = judge([_poster(ACKS)], [_viewer([1, 3])], LOG, HISTORY)
    assert verdict.viewers_with_gap == 1 and verdict.failures()


def test_live_deliveries_out_of_log_order_are_counted() -> None:
    verdict = judge([_poster(ACKS)], [_viewer([2, 1, 3])], LOG, HISTORY)
    assert verdict.out_of_order == 1 and verdict.failures()


def test_nothing_acked_at_all_fails() -> None:
    assert judge([_poster([])], [_viewer([])], {}, {}).failures() == ["no comment was acked at all"]
