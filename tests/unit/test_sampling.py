"""Rate monitor and tiers."""

from __future__ import annotations

import pytest
from livechat.config import SamplingConfig
from livechat.services.sampling import PPM, Sampler


def feed(
    sampler: Sampler, stream: str, rate: float, start: float, seconds: float, step: float = 0.01
) -> float:
    """Observe ``rate`` comments/s for ``seconds``; returns the end time."""
    now = start
    per_step = rate * step
    carry = 0.0
    while now < start + seconds:
        carry += per_step
        count = int(carry)
        carry -= count
        if count:
            sampler.observe(stream, now, count)
        now += step
    return now


@pytest.mark.parametrize(
    ("rate", "level", "keep"),
    [(1_000, 0, PPM), (6_000, 1, 500_000), (25_000, 2, 100_000), (80_000, 3, 50_000)],
)
def test_default_tiers(rate: float, level: int, keep: int) -> None:
    sampler = Sampler(SamplingConfig())
    end = feed(sampler, "s", rate, 0.0, 3.0)
    tier = sampler.tier("s", end)
    assert tier.level == level and tier.keep_ppm == keep
    assert tier.rate == pytest.approx(rate, rel=0.05)


def test_hysteresis_and_cool_down() -> None:
    sampler = Sampler(SamplingConfig())
    end = feed(sampler, "s", 6_000, 0.0, 3.0)
    assert sampler.tier("s", end).level == 1
    # 4 500/s is below 5 000 but above 80 % of it: stays in tier 1.
    end = feed(sampler, "s", 4_500, end, 3.0)
    assert sampler.tier("s", end).level == 1
    end = feed(sampler, "s", 3_000, end, 3.0)
    assert sampler.tier("s", end).level == 0
    # Silence empties the window.
    assert sampler.tier("s", end + 10).rate == 0.0


def test_streams_are_independent_and_keep_follows_tier() -> None:
    sampler = Sampler(SamplingConfig())
    end = feed(sampler, "hot", 60_000, 0.0, 3.0)
    sampler.observe("cold", end)
    assert sampler.tier("hot", end).level == 3 and sampler.tier("cold", end).level == 0
    ids = range(1 << 42, (1 << 42) + 20_000)
    assert all(sampler.keep("cold", i) for i in ids)
    kept = sum(sampler.keep("hot", i) for i in ids)
    assert 0.04 < kept / 20_000 < 0.06


def test_custom_tiers_and_validation() -> None:
    sampler = Sampler(SamplingConfig(tiers=((10.0, 0.25),), window_s=1.0, buckets=4))
    end = feed(sampler, "s", 50, 0.0, 2.0)
    assert sampler.tier("s", end).keep_ppm == 250_000
    with pytest.raises(ValueError):
        Sampler(SamplingConfig(tiers=((10.0, 0.5), (5.0, 0.1))))
    with pytest.raises(ValueError):
        Sampler(SamplingConfig(tiers=((10.0, 1.5),)))


def test_select_is_the_ranked_twin_of_keep_many() -> None:
    from livechat.ids import first_id_at
    from livechat.services.ranking import BASE_SCORE, Candidate

    ids = [first_id_at(1_760_000_000_000 + i // 10) + i % 10 for i in range(20_000)]
    candidates = [Candidate(i, f"u{n}", BASE_SCORE) for n, i in enumerate(ids)]
    ranked, plain = Sampler(SamplingConfig()), Sampler(SamplingConfig(ranked=False))
    assert ranked.ranked and not plain.ranked
    for sampler in (ranked, plain):
        assert sampler.select("hot", candidates) is None  # unknown stream: tier 0
        end = feed(sampler, "hot", 60_000, 0.0, 3.0)
        sampler.tier("hot", end)
        assert sampler.keep_ppm("hot") == 50_000
    # One score, nobody near the author cap: the ranked selection is the hash sampler's.
    assert ranked.select("hot", candidates) == plain.select("hot", candidates) == plain.keep_many("hot", ids)
    # Scores count when ranking is on, never when it is off.
    mixed = [Candidate(c.comment_id, c.author, 0 if n % 2 else 12) for n, c in enumerate(candidates)]
    assert plain.select("hot", mixed) == plain.keep_many("hot", ids)
    ranked.forget("hot")
    ranked_mask = Sampler(SamplingConfig()).select("hot", mixed)
    assert ranked_mask is None  # a new sampler has not measured the stream
    end = feed(ranked, "hot", 60_000, 0.0, 3.0)
    ranked.tier("hot", end)
    shown = ranked.select("hot", mixed)
    assert shown is not None
    assert all(c.score == 12 for c, keep in zip(mixed, shown, strict=True) if keep)


def test_ranking_config_validation() -> None:
    with pytest.raises(ValueError):
        Sampler(SamplingConfig(rank_window_ms=0))
    with pytest.raises(ValueError):
        Sampler(SamplingConfig(author_cap=1.5))
