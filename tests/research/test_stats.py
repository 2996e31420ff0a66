import math

import numpy as np
import polars as pl
import pytest

from research import stats
from research.bench import synthetic_closes

DAY = 86_400


def frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=stats.CLOSES_SCHEMA, orient="row")


def test_stats_by_hand_for_one_trader() -> None:
    # Three closes on days 0, 0 and 2 of a 3-day window: +10, -4, +6 USDC.
    closes = frame(
        [
            ("a", 100, 10_000_000, 100_000_000, 10_000_000, 10.0, 60, 0, True),
            ("a", 200, -4_000_000, 50_000_000, 5_000_000, 10.0, 120, 1, False),
            ("a", 2 * DAY + 5, 6_000_000, 50_000_000, 10_000_000, 5.0, 180, 0, True),
        ]
    )
    out = stats.trader_stats(
        closes, as_of=3 * DAY, window_days=3, eligibility=stats.Eligibility(72, 3, 0)
    ).row(0, named=True)
    assert out["trades"] == 3 and out["net_pnl_usdc"] == 12_000_000 and out["volume_usdc"] == 200_000_000
    assert out["win_rate"] == pytest.approx(2 / 3)
    assert out["max_drawdown_usdc"] == 4_000_000  # +10 then -4
    assert out["return_on_collateral"] == pytest.approx(12 / 25)
    daily = np.array([6.0, 0.0, 6.0])  # zero days count
    assert out["sharpe"] == pytest.approx(daily.mean() / daily.std(ddof=1) * math.sqrt(365))
    assert out["profitable_days_share"] == 1.0
    assert out["pairs_traded"] == 2 and out["long_share"] == pytest.approx(2 / 3)
    assert out["max_leverage"] == 10.0 and out["eligible"]


def test_eligibility_follows_the_thresholds() -> None:
    closes = frame(
        [
            ("a", 10 * DAY - 100, 1, 5_000_000_000, 1, 1.0, 1, 0, True),
            ("b", DAY, 1, 5_000_000_000, 1, 1.0, 1, 0, True),
        ]
    )
    out = stats.trader_stats(
        closes, as_of=10 * DAY, window_days=10, eligibility=stats.Eligibility(72, 1, 5_000)
    )
    assert dict(zip(out["trader"], out["eligible"], strict=True)) == {
        "a": True,
        "b": False,
    }  # b inactive for 9 days
    stricter = stats.trader_stats(
        closes, as_of=10 * DAY, window_days=10, eligibility=stats.Eligibility(72, 1, 6_000)
    )
    assert not any(stricter["eligible"])


def test_window_excludes_old_closes() -> None:
    closes = frame([("a", DAY, 5, 1, 1, 1.0, 1, 0, True), ("a", 40 * DAY, 7, 1, 1, 1.0, 1, 0, True)])
    out = stats.trader_stats(closes, as_of=41 * DAY, window_days=30)
    assert out["net_pnl_usdc"].to_list() == [7]


def test_more_traders_screened_deflates_more() -> None:
    closes = synthetic_closes(300, 60, closes_per_day=2, seed=5)
    out = stats.trader_stats(closes, as_of=60 * DAY, window_days=60)
    assert out.height == 300
    assert (out["dsr"] <= out["psr"] + 1e-12).all()  # deflation only lowers the probability
    assert out["dsr_trials"][0] == 300
