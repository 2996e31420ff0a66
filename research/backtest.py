"""Walk-forward copy-strategy backtest: what a follower would have earned copying each ranking's
top K for a week, after fees and slippage, with bootstrap confidence intervals.

Each week (as-of date) a ranking picks its top K traders from what was known then; the follower
copies every position those traders open during the next 7 days with a fixed collateral, at the
trader's leverage, on the trader's pair, and closes (in part or whole) when the trader does.
Costs: the pair's opening and closing fees on the follower's notional, the trader's rollover
rate on the follower's size, and `slippage_bps` against the follower on entry and exit — the
price drift over `COPY_EXECUTION_MAX_DELAY_MS` and the spread, since 15-minute candles cannot
resolve the price half a second after the leader's fill. A copied loss never exceeds the
collateral (liquidation).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from research.features import DAY

DEFAULT_FEE_PPM = 450  # 0.045 % of notional, Avantis' crypto majors; per-pair values override


def copied_trades(
    trades: pl.DataFrame,
    *,
    collateral_usdc: float = 100.0,
    slippage_bps: float = 10.0,
    fee_ppm: dict[int, tuple[int, int]] | None = None,
) -> pl.DataFrame:
    """Every close as the follower's copy would have realized it (USDC, float), by open time."""
    fees = fee_ppm or {}
    fee_frame = pl.DataFrame(
        {
            "pair_index": list(fees),
            "open_ppm": [v[0] for v in fees.values()],
            "close_ppm": [v[1] for v in fees.values()],
        },
        schema={"pair_index": pl.Int32, "open_ppm": pl.Int64, "close_ppm": pl.Int64},
    )
    sign = pl.when(pl.col("is_long")).then(1.0).otherwise(-1.0)
    slip = slippage_bps / 1e4
    t = (
        trades.filter(pl.col("open_price").is_not_null() & (pl.col("open_price") > 0))
        .with_columns(pl.col("pair_index").cast(pl.Int32))
        .join(fee_frame, on="pair_index", how="left")
        .with_columns(
            pl.col("open_ppm").fill_null(DEFAULT_FEE_PPM),
            pl.col("close_ppm").fill_null(DEFAULT_FEE_PPM),
            # The share of the position this close took out, for partial closes.
            frac=(pl.col("collateral") / pl.col("collateral").sum().over("trader", "open_ts", "pair_index")),
        )
    )
    entry = pl.col("open_price") * (1 + sign * slip)
    exit_ = pl.col("close_price") * (1 - sign * slip)
    size = collateral_usdc * pl.col("frac")
    gross = (size * pl.col("leverage") * sign * (exit_ / entry - 1)).clip(lower_bound=-size)
    costs = size * pl.col("leverage") * (pl.col("open_ppm") + pl.col("close_ppm")) / 1e6
    # The trader's rollover per unit of collateral, charged on the follower's (same leverage, same hold).
    rollover = pl.col("rollover").fill_null(0.0) / pl.col("collateral").clip(lower_bound=1e-9) * size
    return t.select(
        "trader",
        "open_ts",
        "ts",
        "pair_index",
        copy_pnl=(gross - costs - rollover).clip(lower_bound=-size),
        copy_collateral=size,
    )


def weekly_copy_pnl(
    copies: pl.DataFrame,
    picks: pl.DataFrame,
    *,
    horizon_days: int = 7,
    blocked: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Follower PnL per (ranking, as_of) from `picks` (ranking, as_of, trader). `blocked` holds
    (pair_index, open_ts) of copies a regime guard refused: they are not opened."""
    c = copies
    if blocked is not None and blocked.height:
        c = c.join(blocked.select("pair_index", "open_ts").unique(), on=["pair_index", "open_ts"], how="anti")
    joined = picks.join(c, on="trader", how="inner").filter(
        (pl.col("open_ts") >= pl.col("as_of")) & (pl.col("open_ts") < pl.col("as_of") + horizon_days * DAY)
    )
    weeks = picks.select("ranking", "as_of").unique()
    pnl = joined.group_by("ranking", "as_of").agg(
        pnl=pl.col("copy_pnl").sum(), copies=pl.len(), max_loss=pl.col("copy_pnl").min()
    )
    return (
        weeks.join(pnl, on=["ranking", "as_of"], how="left")
        .with_columns(pl.col("pnl").fill_null(0.0), pl.col("copies").fill_null(0))
        .sort("ranking", "as_of")
    )


def top_k(scores: pl.DataFrame, column: str, k: int, *, ranking: str | None = None) -> pl.DataFrame:
    """Top `k` traders per as_of by `column` (descending; ties by trader id)."""
    return (
        scores.filter(pl.col(column).is_not_null())
        .sort(["as_of", column, "trader"], descending=[False, True, False])
        .group_by("as_of", maintain_order=True)
        .head(k)
        .select("as_of", "trader", ranking=pl.lit(ranking or column))
    )


def summarize(weekly: pl.DataFrame, *, reference: str, n_boot: int = 2000, seed: int = 0) -> pl.DataFrame:
    """Per ranking: total and mean weekly follower PnL with a bootstrap CI over weeks, max drawdown
    of the cumulative weekly PnL, and the paired difference to `reference` (weeks resampled together)."""
    rng = np.random.default_rng(seed)
    wide = weekly.pivot(on="ranking", index="as_of", values="pnl").sort("as_of").fill_null(0.0)
    n = wide.height
    idx = rng.integers(0, n, (n_boot, n)) if n else np.zeros((0, 0), dtype=int)
    ref = wide[reference].to_numpy() if reference in wide.columns else np.zeros(n)
    rows = []
    for name in [c for c in wide.columns if c != "as_of"]:
        x = wide[name].to_numpy()
        boots = x[idx].mean(axis=1) if n else np.array([np.nan])
        diff = (x - ref)[idx].mean(axis=1) if n else np.array([np.nan])
        curve = np.cumsum(x)
        rows.append(
            {
                "ranking": name,
                "weeks": n,
                "total_pnl_usdc": float(x.sum()),
                "mean_weekly_pnl_usdc": float(x.mean()) if n else float("nan"),
                "ci_low": float(np.percentile(boots, 2.5)),
                "ci_high": float(np.percentile(boots, 97.5)),
                "max_drawdown_usdc": float((np.maximum.accumulate(np.maximum(curve, 0)) - curve).max())
                if n
                else 0.0,
                f"minus_{reference}_mean": float((x - ref).mean()) if n else float("nan"),
                "diff_ci_low": float(np.percentile(diff, 2.5)),
                "diff_ci_high": float(np.percentile(diff, 97.5)),
            }
        )
    return pl.DataFrame(rows).sort("mean_weekly_pnl_usdc", descending=True)
