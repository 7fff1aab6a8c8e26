"""Comment ids (livechat.ids): the ordering every store and the recovery path key on."""

from __future__ import annotations

import itertools

import pytest
from livechat.ids import (
    EPOCH_MS,
    MAX_NODE,
    MAX_SEQUENCE,
    CommentIdGenerator,
    first_id_at,
    id_node,
    id_sequence,
    id_timestamp_ms,
)

T0 = 1_750_000_000_000


class FakeClock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_ids_strictly_increase_and_fit_a_signed_64_bit_column() -> None:
    gen = CommentIdGenerator(node=MAX_NODE)
    ids = [gen.next_id() for _ in range(100_000)]
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert all(0 < i < 2**63 for i in ids)


def test_fields_decode() -> None:
    clock = FakeClock(T0)
    gen = CommentIdGenerator(node=517, clock_ms=clock)
    first, second = gen.next_id(), gen.next_id()
    assert (id_timestamp_ms(first), id_node(first), id_sequence(first)) == (T0, 517, 0)
    assert (id_timestamp_ms(second), id_node(second), id_sequence(second)) == (T0, 517, 1)
    clock.ms += 1
    assert id_sequence(gen.next_id()) == 0


def test_clock_stepping_back_keeps_ids_increasing() -> None:
    clock = FakeClock(T0)
    gen = CommentIdGenerator(node=1, clock_ms=clock)
    before = gen.next_id()
    clock.ms -= 5_000  # NTP step back
    after = [gen.next_id() for _ in range(10)]
    assert before < after[0] and after == sorted(after)
    assert id_timestamp_ms(after[-1]) == T0


def test_sequence_overflow_borrows_the_next_millisecond() -> None:
    gen = CommentIdGenerator(node=2, clock_ms=FakeClock(T0))
    ids = [gen.next_id() for _ in range(MAX_SEQUENCE + 1 + 10)]
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert id_timestamp_ms(ids[MAX_SEQUENCE]) == T0
    assert id_timestamp_ms(ids[MAX_SEQUENCE + 1]) == T0 + 1


def test_same_millisecond_orders_by_node_then_sequence() -> None:
    low = CommentIdGenerator(node=3, clock_ms=FakeClock(T0))
    high = CommentIdGenerator(node=4, clock_ms=FakeClock(T0))
    low_ids = [low.next_id() for _ in range(100)]
    assert max(low_ids) < high.next_id()


def test_first_id_at_bounds_ids_by_time() -> None:
    gen = CommentIdGenerator(node=MAX_NODE, clock_ms=FakeClock(T0))
    ids = [gen.next_id() for _ in range(50)]
    assert all(first_id_at(T0) <= i < first_id_at(T0 + 1) for i in ids)
    with pytest.raises(ValueError):
        first_id_at(EPOCH_MS - 1)


@pytest.mark.parametrize("node", [-1, MAX_NODE + 1])
def test_node_out_of_range_is_refused(node: int) -> None:
    with pytest.raises(ValueError):
        CommentIdGenerator(node=node)


def test_clock_before_the_epoch_is_refused() -> None:
    gen = CommentIdGenerator(node=0, clock_ms=FakeClock(EPOCH_MS - 1))
    with pytest.raises(OverflowError):
        gen.next_id()
