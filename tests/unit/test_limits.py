"""Write limits: role buckets, slow mode, per-stream admission, error budget, idempotency cache."""

from __future__ import annotations

from livechat.config import LimitsConfig
from livechat.services.idempotency import AckRecord, IdempotencyCache, idempotency_key
from livechat.services.limits import ErrorBudget, WriteLimits


def test_viewer_gets_ten_per_minute_then_one_every_six_seconds() -> None:
    limits = WriteLimits(LimitsConfig())
    assert all(limits.take_comment("u1", 0, 100.0) == 0.0 for _ in range(10))
    wait = limits.take_comment("u1", 0, 100.0)
    assert 5.9 < wait <= 6.0
    assert limits.take_comment("u1", 0, 105.0) > 0.0
    assert limits.take_comment("u1", 0, 106.01) == 0.0
    # Another user has their own bucket.
    assert limits.take_comment("u2", 0, 100.0) == 0.0


def test_roles_have_their_own_rates() -> None:
    limits = WriteLimits(LimitsConfig())
    assert sum(limits.take_comment("mod", 1, 0.0) == 0.0 for _ in range(150)) == 100
    assert all(limits.take_comment("owner", 2, 0.0) == 0.0 for _ in range(10_000))  # 0 = unlimited


def test_slow_mode_wait() -> None:
    limits = WriteLimits(LimitsConfig())
    assert limits.slow_mode_wait("s", "u", 30, 0.0) == 0.0
    limits.mark_posted("s", "u", 0.0)
    assert limits.slow_mode_wait("s", "u", 30, 10.0) == 20.0
    assert limits.slow_mode_wait("s", "u", 30, 30.0) == 0.0
    assert limits.slow_mode_wait("other", "u", 30, 10.0) == 0.0


def test_stream_admission_cap() -> None:
    limits = WriteLimits(LimitsConfig(stream_comments_per_second=100))
    admitted = sum(limits.admit_stream("hot", 5.0) for _ in range(150))
    assert admitted == 100
    assert limits.admit_stream("cold", 5.0)
    assert sum(limits.admit_stream("hot", 5.5) for _ in range(100)) == 50


def test_prune_forgets_refilled_buckets() -> None:
    limits = WriteLimits(LimitsConfig())
    limits.take_comment("u1", 0, 0.0)
    limits.take_reaction("u1", 0.0)
    assert limits.prune(0.05) == 0
    assert limits.prune(120.0) >= 2


def test_error_budget() -> None:
    budget = ErrorBudget(3)
    assert [budget.charge(1, 0.0) for _ in range(4)] == [False, False, False, True]
    assert budget.charge(1, 61.0) is False  # new window
    assert budget.charge(2, 0.0) is False


def test_idempotency_window_and_bound() -> None:
    cache = IdempotencyCache(window_s=10.0, max_entries=3)
    key = idempotency_key("u1", "c1")
    cache.put(key, AckRecord("s", 1, 2), 0.0)
    assert cache.get(key, 5.0) == AckRecord("s", 1, 2)
    assert cache.get(key, 10.5) is None
    assert idempotency_key("u1", "c1") != idempotency_key("u", "1c1")
    for i in range(5):
        cache.put(f"k{i}", AckRecord("s", i, i), 20.0)
    assert len(cache) == 3 and cache.get("k0", 20.0) is None and cache.get("k4", 20.0) is not None
    assert cache.expire(31.0) == 3 and len(cache) == 0
