"""Rolling trader statistics and the leaderboard, vectorized over all traders at once.

Input is one row per realized close (see `closes_frame`). Daily PnL series include the days a
trader did not trade as zeros, so Sharpe, Sortino, skew and kurtosis come from raw power sums
over active days — no calendar grid is ever built, which keeps 10,000 traders × 90 days well
inside a second.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from research import skill
from research.ledger import RealizedClose

DAY = 86_400
CLOSES_SCHEMA = {
    "trader": pl.Categorical,  # grouping on dictionary codes, not strings
    "ts": pl.Int64,
    "realized_usdc": pl.Int64,
    "notional_usdc": pl.Int64,
    "collateral_usdc": pl.Int64,
    "leverage": pl.Float64,
    "hold_seconds": pl.Int64,
    "pair_index": pl.Int32,
    "is_long": pl.Boolean,
}


@dataclass(frozen=True)
class Eligibility:
    active_hours: int = 72
    min_trades: int = 300
    min_volume_usd: int = 10_000_000


def closes_frame(closes: Iterable[RealizedClose]) -> pl.DataFrame:
    rows = [
        (
            c.trader,
            c.ts,
            c.realized_pnl_usdc,
            c.notional_usdc,
            c.collateral_closed_usdc,
            float(c.leverage),
            c.hold_seconds,
            c.pair_index,
            c.side.value == "long",
        )
        for c in closes
    ]
    return pl.DataFrame(rows, schema=CLOSES_SCHEMA, orient="row")


def trader_stats(
    closes: pl.DataFrame,
    *,
    as_of: int,
    window_days: int = 30,
    eligibility: Eligibility = Eligibility(),
    min_trades_for_sr_variance: int = 10,
) -> pl.DataFrame:
    """One row per trader active in (as_of - window, as_of]; money columns stay integer micro-USDC."""
    start = as_of - window_days * DAY
    w = closes.filter((pl.col("ts") > start) & (pl.col("ts") <= as_of)).sort("ts")
    if w.is_empty():
        return pl.DataFrame()
    d = float(window_days)
    w = w.with_columns(
        day=((pl.col("ts") - start - 1) // DAY), week=((pl.col("ts") - start - 1) // (7 * DAY))
    )
    # Within a group the rows keep their (time) order, so the equity curve is a cumulative sum there;
    # its peak starts at 0, the balance before the first trade.
    equity = pl.col("realized_usdc").cum_sum()

    daily = w.group_by("trader", "day").agg(pnl=pl.col("realized_usdc").sum())
    day_moments = (
        daily.with_columns(x=pl.col("pnl").cast(pl.Float64) / 1e6)
        .group_by("trader")
        .agg(
            active_days=pl.len(),
            s1=pl.col("x").sum(),
            s2=(pl.col("x") ** 2).sum(),
            s3=(pl.col("x") ** 3).sum(),
            s4=(pl.col("x") ** 4).sum(),
            down2=(pl.col("x").clip(upper_bound=0) ** 2).sum(),
            profitable_days=(pl.col("x") > 0).sum(),
        )
    )
    weekly = (
        w.group_by("trader", "week")
        .agg(pnl=pl.col("realized_usdc").sum())
        .group_by("trader")
        .agg(profitable_weeks_share=(pl.col("pnl") > 0).mean())
    )
    per = w.group_by("trader").agg(
        trades=pl.len(),
        volume_usdc=pl.col("notional_usdc").sum(),
        net_pnl_usdc=pl.col("realized_usdc").sum(),
        collateral_usdc=pl.col("collateral_usdc").sum(),
        win_rate=(pl.col("realized_usdc") > 0).mean(),
        max_drawdown_usdc=(equity.cum_max().clip(lower_bound=0) - equity).max(),
        avg_hold_seconds=pl.col("hold_seconds").mean(),
        avg_leverage=pl.col("leverage").mean(),
        max_leverage=pl.col("leverage").max(),
        pairs_traded=pl.col("pair_index").n_unique(),
        long_share=pl.col("is_long").mean(),
        last_activity=pl.col("ts").max(),
    )
    out = per.join(day_moments, on="trader").join(weekly, on="trader")
    # Moments of the full daily series, zero days included.
    mean = pl.col("s1") / d
    var = (pl.col("s2") - pl.col("s1") ** 2 / d) / (d - 1)
    m2 = pl.col("s2") / d - mean**2
    m3 = pl.col("s3") / d - 3 * mean * pl.col("s2") / d + 2 * mean**3
    m4 = pl.col("s4") / d - 4 * mean * pl.col("s3") / d + 6 * mean**2 * pl.col("s2") / d - 3 * mean**4
    out = out.with_columns(
        sr_daily=pl.when(var > 0).then(mean / var.sqrt()).otherwise(0.0),
        skew=pl.when(m2 > 0).then(m3 / m2**1.5).otherwise(0.0),
        kurtosis=pl.when(m2 > 0).then(m4 / m2**2).otherwise(3.0),
        sortino_daily=pl.when(pl.col("down2") > 0).then(mean / (pl.col("down2") / d).sqrt()).otherwise(None),
    ).with_columns(
        sharpe=pl.col("sr_daily") * math.sqrt(365),
        sortino=pl.col("sortino_daily") * math.sqrt(365),
        return_on_collateral=pl.when(pl.col("collateral_usdc") > 0)
        .then(pl.col("net_pnl_usdc") / pl.col("collateral_usdc"))
        .otherwise(None),
        profitable_days_share=pl.col("profitable_days") / pl.col("active_days"),
        t_stat=pl.col("sr_daily") * math.sqrt(d),
    )
    out = _add_skill(out, n_obs=int(d), min_trades=min_trades_for_sr_variance)
    eligible = (
        (pl.col("last_activity") >= as_of - eligibility.active_hours * 3600)
        & (pl.col("trades") >= eligibility.min_trades)
        & (pl.col("volume_usdc") >= eligibility.min_volume_usd * 1_000_000)
    )
    return (
        out.with_columns(eligible=eligible, window_days=pl.lit(window_days), as_of=pl.lit(as_of))
        .drop("s1", "s2", "s3", "s4", "down2", "profitable_days")
        .with_columns(pl.col("trader").cast(pl.Utf8))
        .sort("trader")
    )


def _add_skill(out: pl.DataFrame, *, n_obs: int, min_trades: int) -> pl.DataFrame:
    sr = out["sr_daily"].to_numpy()
    g3 = out["skew"].to_numpy()
    g4 = out["kurtosis"].to_numpy()
    screened = out["trades"].to_numpy() >= min_trades
    n_trials = int(screened.sum())
    # Cross-sectional variance of the trials' Sharpe ratios, estimated robustly (IQR): wash traders
    # paying fees lose with Sharpe -20 like clockwork, and they are not trials of a strategy that
    # should raise the bar for everyone else.
    sr_var = robust_variance(sr[screened]) if n_trials > 1 else 0.0
    sr0 = skill.expected_max_sharpe(n_trials, sr_var)
    psr = skill.probabilistic_sharpe_ratio(sr, n_obs, g3, g4)
    dsr = skill.probabilistic_sharpe_ratio(sr, n_obs, g3, g4, sr_benchmark=sr0)
    min_trl = skill.min_track_record_length(sr, g3, g4)
    return out.with_columns(
        psr=pl.Series(psr),
        dsr=pl.Series(dsr),
        min_trl_days=pl.Series(min_trl),
        dsr_trials=pl.lit(n_trials),
        dsr_sr0_daily=pl.lit(sr0),
    )


def robust_variance(x: np.ndarray) -> float:
    q75, q25 = np.percentile(x, [75, 25])
    return float(((q75 - q25) / 1.349) ** 2)


def daily_pnl(closes: pl.DataFrame, trader: str, *, as_of: int, window_days: int) -> np.ndarray:
    """The trader's full daily PnL series in USDC (zeros on idle days), for the bootstrap."""
    start = as_of - window_days * DAY
    rows = closes.filter((pl.col("trader") == trader) & (pl.col("ts") > start) & (pl.col("ts") <= as_of))
    series = np.zeros(window_days)
    for day, pnl in rows.select(((pl.col("ts") - start - 1) // DAY).alias("d"), "realized_usdc").iter_rows():
        series[day] += pnl / 1e6
    return series


def leaderboard(
    stats: pl.DataFrame,
    closes: pl.DataFrame,
    *,
    as_of: int,
    window_days: int,
    limit: int = 20,
    eligible_only: bool = True,
    n_boot: int = 1000,
    rank_by: Sequence[tuple[str, bool]] = (("dsr", True), ("net_pnl_usdc", True)),
) -> tuple[pl.DataFrame, skill.SkillShare]:
    """Candidates ranked by DSR (or by `rank_by`: columns, each descending or not, nulls last),
    each with a bootstrap p-value, plus the cross-section skill share."""
    share = (
        skill.skill_share(stats["t_stat"].to_numpy())
        if not stats.is_empty()
        else skill.skill_share(np.array([]))
    )
    pool = stats.filter(pl.col("eligible")) if eligible_only else stats
    top = pool.sort([c for c, _ in rank_by], descending=[d for _, d in rank_by], nulls_last=True).head(limit)
    pvals = [
        skill.stationary_bootstrap_pvalue(
            daily_pnl(closes, t, as_of=as_of, window_days=window_days), n_boot=n_boot, seed=i
        )
        for i, t in enumerate(top["trader"].to_list())
    ]
    return top.with_columns(bootstrap_p=pl.Series(pvals, dtype=pl.Float64)), share
