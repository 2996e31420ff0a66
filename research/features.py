"""Point-in-time trader features, vectorized in polars over every trader at once.

Input is the canonical event frame (`data.event_frames.EVENT_SCHEMA`: simulator output, a DuckDB
snapshot of `trade_events`, or history-API trades after ingest). `trade_table` turns it into one
row per realized close and `position_table` into one row per position; `trader_features` keeps
only what happened strictly before `as_of`, so a feature never sees the future: deleting every
event at or after `as_of` changes nothing (tests/research/test_features.py proves it).

Nothing here knows a trader type or a simulator parameter: thresholds are stated in units a
follower understands (minutes, percent of collateral) and apply to any venue's traders.

Realized PnL of a close is float USDC here (features and models may be float; the ledger and
journal stay exact): usdc_sent − collateral closed − the close's pro-rata share of the opening fee,
the ledger's formula up to rounding of the fee share.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from research import skill
from research.stats import robust_variance

DAY = 86_400
WEEK = 7 * DAY
LOOKBACK_DAYS = 90  # features look this far back
MIN_SKILL_DAYS = 7  # a Sharpe on fewer days of record is not computed
CLOSING_KINDS = ("close", "partial_close", "tp", "sl", "liquidation")
FULL_CLOSE_KINDS = ("close", "tp", "sl", "liquidation")
# A round trip shorter than this with a PnL within ±FLAT_ROC of its collateral moves no money:
# the signature of volume farming and wash trading.
SHORT_TRIP_SECONDS = 600
FLAT_ROC = 0.01

# Feature groups. STYLE is what archetypes cluster on (how someone trades, not how well).
ACTIVITY = ["trades", "active_days", "log_volume", "size_cv", "trades_per_day", "days_since_last_trade"]
STYLE = [
    "lev_mean",
    "lev_max",
    "log_hold_median_h",
    "long_share",
    "pair_concentration",
    "tp_share",
    "sl_share",
    "log_trades_per_day",
]
PERFORMANCE = [
    "pnl_7d",
    "pnl_30d",
    "pnl_90d",
    "roc_30d",
    "roc_mean",
    "win_rate",
    "payoff_ratio",
    "profit_factor",
    "sharpe_daily",
    "sortino_daily",
    "max_drawdown_roc",
    "best_trade_share",
    "pos_week_share",
]
SKILL = ["psr", "dsr", "min_trl_days", "bootstrap_p", "t_stat"]
RISK = [
    "tail_loss_ratio",
    "size_after_loss",
    "liquidation_share",
    "open_positions",
    "open_underwater_share",
    "short_flat_share",
    "loser_hold_ratio",
    "no_sl_share",
    "roc_skew",
]
FEATURES = ACTIVITY + STYLE[:-1] + PERFORMANCE + SKILL + RISK  # log_trades_per_day is STYLE-only


def trade_table(events: pl.DataFrame) -> pl.DataFrame:
    """One row per realized close: the trade as a follower would have seen it.

    Columns: trader, ts, open_ts, pair_index, is_long, kind, leverage, collateral (closed, USDC),
    notional, realized (USDC), roc (realized / collateral), hold_s, open_price, close_price,
    tp_set, sl_set, fee (open share + close + rollover, USDC), rollover (USDC).
    """
    key = ["trader", "pair_index", "trade_index", "open_ts"]
    opens = (
        events.filter(pl.col("kind") == "open")
        .group_by(key)
        .agg(
            open_fee=pl.col("open_fee_usdc").sum().cast(pl.Float64) / 1e6,
            open_collateral=pl.col("collateral_usdc").max().cast(pl.Float64) / 1e6,
            open_price=pl.col("price_e10").first().cast(pl.Float64) / 1e10,
            open_tp=pl.col("tp_e10").first(),
            open_sl=pl.col("sl_e10").first(),
        )
    )
    closes = events.filter(pl.col("kind").is_in(CLOSING_KINDS))
    t = closes.join(opens, on=key, how="left").with_columns(
        collateral=pl.col("size_closed_usdc").cast(pl.Float64) / 1e6,
        leverage=pl.col("leverage_e10").cast(pl.Float64) / 1e10,
    )
    fee_share = (
        pl.col("open_fee").fill_null(0.0)
        * pl.col("collateral")
        / pl.max_horizontal(pl.col("open_collateral").fill_null(pl.col("collateral")), pl.col("collateral"))
    )
    realized = pl.col("usdc_sent").cast(pl.Float64) / 1e6 - pl.col("collateral") - fee_share
    tp = pl.coalesce(pl.col("open_tp"), pl.col("tp_e10")).fill_null(0)
    sl = pl.coalesce(pl.col("open_sl"), pl.col("sl_e10")).fill_null(0)
    return (
        t.select(
            "trader",
            "ts",
            "open_ts",
            "pair_index",
            is_long=pl.col("side") == "long",
            kind=pl.col("kind"),
            leverage=pl.col("leverage"),
            collateral=pl.col("collateral"),
            notional=pl.col("collateral") * pl.col("leverage"),
            realized=realized,
            hold_s=(pl.col("ts") - pl.col("open_ts")).clip(lower_bound=0),
            open_price=pl.col("open_price"),
            close_price=pl.col("price_e10").cast(pl.Float64) / 1e10,
            tp_set=tp > 0,
            sl_set=sl > 0,
            fee=fee_share + (pl.col("close_fee_usdc") + pl.col("rollover_fee_usdc")).cast(pl.Float64) / 1e6,
            rollover=pl.col("rollover_fee_usdc").cast(pl.Float64) / 1e6,
        )
        .with_columns(roc=pl.col("realized") / pl.col("collateral").clip(lower_bound=1e-9))
        .sort("trader", "ts")
    )


def position_table(events: pl.DataFrame) -> pl.DataFrame:
    """One row per opened position: when it opened and when (if ever) it fully closed."""
    key = ["trader", "pair_index", "trade_index", "open_ts"]
    opens = (
        events.filter(pl.col("kind") == "open")
        .group_by(key)
        .agg(
            side=pl.col("side").first(),
            collateral=pl.col("collateral_usdc").max().cast(pl.Float64) / 1e6,
            leverage=pl.col("leverage_e10").first().cast(pl.Float64) / 1e10,
            open_price=pl.col("price_e10").first().cast(pl.Float64) / 1e10,
        )
    )
    ends = (
        events.filter(pl.col("kind").is_in(FULL_CLOSE_KINDS)).group_by(key).agg(closed_ts=pl.col("ts").min())
    )
    return opens.join(ends, on=key, how="left")


def pair_prices(events: pl.DataFrame) -> pl.DataFrame:
    """Every price the events reveal, per pair and time: marks for open positions."""
    return (
        events.filter(pl.col("price_e10").is_not_null())
        .select("pair_index", "ts", price=pl.col("price_e10").cast(pl.Float64) / 1e10)
        .sort("pair_index", "ts")
    )


def trader_features(
    trades: pl.DataFrame,
    as_of: int,
    *,
    positions: pl.DataFrame | None = None,
    prices: pl.DataFrame | None = None,
    lookback_days: int = LOOKBACK_DAYS,
    n_boot: int = 200,
) -> pl.DataFrame:
    """One row per trader with a close in the `lookback_days` before `as_of` (strictly before)."""
    start = as_of - lookback_days * DAY
    w = trades.filter((pl.col("ts") < as_of) & (pl.col("ts") >= start))
    if w.is_empty():
        return pl.DataFrame(schema={"trader": pl.Utf8, **dict.fromkeys(FEATURES, pl.Float64)})
    # Group on integer codes, not address strings: every aggregation below is then a cheap hash.
    w = w.with_columns(tid=pl.col("trader").cast(pl.Categorical).to_physical())
    names = w.group_by("tid").agg(trader=pl.col("trader").first())
    # A record that began before the lookback window counts as the whole window long.
    earlier = trades.filter(pl.col("ts") < start).select(pl.col("trader").unique())
    w = w.drop("trader").with_columns(day=(as_of - 1 - pl.col("ts")) // DAY).sort("tid", "ts")
    same = pl.col("tid") == pl.col("tid").shift(1)  # rows are sorted by trader, then time
    prev_roc = pl.when(same).then(pl.col("roc").shift(1))
    size_step = pl.when(same).then(pl.col("collateral").log() - pl.col("collateral").shift(1).log())
    w = w.with_columns(prev_loss=prev_roc < 0, prev_win=prev_roc > 0, size_step=size_step)
    loss, win = pl.col("realized") < 0, pl.col("realized") > 0
    worst_n = (pl.len() * 0.05).ceil().cast(pl.UInt32)
    equity = pl.col("realized").cum_sum()
    per = w.group_by("tid").agg(
        trades=pl.len().cast(pl.Float64),
        first_ts=pl.col("ts").min(),
        last_ts=pl.col("ts").max(),
        active_days=pl.col("day").n_unique().cast(pl.Float64),
        volume=pl.col("notional").sum(),
        size_mean=pl.col("collateral").mean(),
        size_std=pl.col("collateral").std(),
        lev_mean=pl.col("leverage").mean(),
        lev_max=pl.col("leverage").max(),
        hold_median_h=pl.col("hold_s").median() / 3600,
        long_share=pl.col("is_long").cast(pl.Float64).mean(),
        tp_share=pl.col("tp_set").cast(pl.Float64).mean(),
        sl_share=pl.col("sl_set").cast(pl.Float64).mean(),
        pnl_7d=pl.col("realized").filter(pl.col("ts") >= as_of - 7 * DAY).sum(),
        pnl_30d=pl.col("realized").filter(pl.col("ts") >= as_of - 30 * DAY).sum(),
        coll_30d=pl.col("collateral").filter(pl.col("ts") >= as_of - 30 * DAY).sum(),
        pnl_90d=pl.col("realized").sum(),
        roc_mean=pl.col("roc").mean(),
        win_rate=win.cast(pl.Float64).mean(),
        avg_win=pl.col("roc").filter(win).mean(),
        avg_loss=pl.col("roc").filter(loss).mean(),
        gross_win=pl.col("realized").filter(win).sum(),
        gross_loss=pl.col("realized").filter(loss).sum(),
        best_trade=pl.col("realized").max(),
        max_dd=(equity.cum_max().clip(lower_bound=0) - equity).max(),
        tail_roc=pl.col("roc").sort().head(worst_n).mean(),
        size_after_loss=pl.col("size_step").filter(pl.col("prev_loss")).mean(),
        size_after_win=pl.col("size_step").filter(pl.col("prev_win")).mean(),
        liquidation_share=(pl.col("kind") == "liquidation").cast(pl.Float64).mean(),
        short_flat_share=((pl.col("hold_s") < SHORT_TRIP_SECONDS) & (pl.col("roc").abs() < FLAT_ROC))
        .cast(pl.Float64)
        .mean(),
        loser_hold=pl.col("hold_s").filter(loss).median(),
        winner_hold=pl.col("hold_s").filter(win).median(),
        no_sl_share=(~pl.col("sl_set")).cast(pl.Float64).mean(),
        # Many small wins and rare large losses skew trade returns to the left (loss hiding).
        roc_skew=pl.col("roc").skew().fill_nan(0.0).fill_null(0.0),
    )
    pair_hhi = (
        w.group_by("tid", "pair_index")
        .agg(n=pl.len())
        .with_columns(share=pl.col("n") / pl.col("n").sum().over("tid"))
        .group_by("tid")
        .agg(pair_concentration=(pl.col("share") ** 2).sum())
    )
    # Record length in days: since the trader's first close we know of, at least MIN_SKILL_DAYS.
    n_days = ((as_of - pl.col("first_ts")) / DAY).ceil().clip(MIN_SKILL_DAYS, lookback_days)
    daily = w.group_by("tid", "day").agg(x=pl.col("realized").sum())
    moments = daily.group_by("tid").agg(
        s1=pl.col("x").sum(),
        s2=(pl.col("x") ** 2).sum(),
        s3=(pl.col("x") ** 3).sum(),
        s4=(pl.col("x") ** 4).sum(),
        down2=(pl.col("x").clip(upper_bound=0) ** 2).sum(),
    )
    weekly = (
        w.with_columns(week=pl.col("day") // 7)
        .group_by("tid", "week")
        .agg(x=pl.col("realized").sum())
        .group_by("tid")
        .agg(pos_weeks=(pl.col("x") > 0).sum())
    )
    out = (
        per.join(pair_hhi, on="tid")
        .join(moments, on="tid")
        .join(weekly, on="tid")
        .join(names, on="tid")
        .with_columns(earlier=pl.col("trader").is_in(earlier["trader"].implode()))
    )
    out = out.with_columns(n_days=pl.when(pl.col("earlier")).then(float(lookback_days)).otherwise(n_days))
    d = pl.col("n_days")
    mean = pl.col("s1") / d
    var = (pl.col("s2") - pl.col("s1") ** 2 / d) / (d - 1)
    m2 = pl.col("s2") / d - mean**2
    m3 = pl.col("s3") / d - 3 * mean * pl.col("s2") / d + 2 * mean**3
    m4 = pl.col("s4") / d - 4 * mean * pl.col("s3") / d + 6 * mean**2 * pl.col("s2") / d - 3 * mean**4
    out = out.with_columns(
        sharpe_daily=pl.when(var > 0).then(mean / var.sqrt()).otherwise(0.0),
        skew=pl.when(m2 > 0).then(m3 / m2**1.5).otherwise(0.0),
        kurtosis=pl.when(m2 > 0).then(m4 / m2**2).otherwise(3.0),
        sortino_daily=pl.when(pl.col("down2") > 0)
        .then(mean / (pl.col("down2") / d).sqrt())
        .otherwise(pl.when(mean > 0).then(10.0).otherwise(0.0)),
    ).with_columns(
        t_stat=pl.col("sharpe_daily") * d.sqrt(),
        log_volume=pl.col("volume").log1p(),
        size_cv=pl.col("size_std").fill_null(0.0) / pl.col("size_mean"),
        trades_per_day=pl.col("trades") / d,
        days_since_last_trade=(as_of - pl.col("last_ts")) / DAY,
        log_hold_median_h=(pl.col("hold_median_h") + 1 / 60).log(),
        roc_30d=pl.when(pl.col("coll_30d") > 0).then(pl.col("pnl_30d") / pl.col("coll_30d")).otherwise(0.0),
        payoff_ratio=(pl.col("avg_win") / -pl.col("avg_loss")).fill_null(0.0).fill_nan(0.0).clip(0, 100),
        profit_factor=pl.when(pl.col("gross_loss") < 0)
        .then(pl.col("gross_win") / -pl.col("gross_loss"))
        .otherwise(pl.when(pl.col("gross_win") > 0).then(100.0).otherwise(1.0))
        .fill_null(0.0)
        .clip(0, 100),
        max_drawdown_roc=pl.col("max_dd") / pl.col("size_mean"),
        best_trade_share=pl.when(pl.col("gross_win") > 0)
        .then(pl.col("best_trade").clip(lower_bound=0) / pl.col("gross_win"))
        .otherwise(0.0),
        pos_week_share=pl.col("pos_weeks") / (d / 7).ceil(),
        # The worst 5 % of trades against the average win, both as a return on collateral.
        tail_loss_ratio=pl.when(pl.col("avg_win") > 0)
        .then((-pl.col("tail_roc")).clip(lower_bound=0) / pl.col("avg_win"))
        .otherwise(0.0)
        .clip(0, 1000),
        size_after_loss=(pl.col("size_after_loss").fill_null(0.0) - pl.col("size_after_win").fill_null(0.0)),
        loser_hold_ratio=pl.when((pl.col("winner_hold") > 0) & pl.col("loser_hold").is_not_null())
        .then(pl.col("loser_hold") / pl.col("winner_hold"))
        .otherwise(1.0)
        .clip(0, 1000),
    )
    out = out.with_columns(log_trades_per_day=pl.col("trades_per_day").log())
    out = _with_skill(out, daily, as_of=as_of, lookback_days=lookback_days, n_boot=n_boot)
    out = out.join(_open_book(positions, prices, as_of), on="trader", how="left").with_columns(
        pl.col("open_positions").fill_null(0.0), pl.col("open_underwater_share").fill_null(0.0)
    )
    cols = ["trader", *FEATURES, "log_trades_per_day"]
    return out.select(
        [pl.col(c).cast(pl.Float64).fill_nan(None).alias(c) if c != "trader" else pl.col(c) for c in cols]
    ).sort("trader")


def _with_skill(
    out: pl.DataFrame, daily: pl.DataFrame, *, as_of: int, lookback_days: int, n_boot: int
) -> pl.DataFrame:
    """PSR, DSR, MinTRL and the stationary-bootstrap p-value, each on the trader's own record length."""
    sr = out["sharpe_daily"].to_numpy()
    g3, g4 = out["skew"].to_numpy(), out["kurtosis"].to_numpy()
    n = out["n_days"].to_numpy().astype(int)
    screened = out["trades"].to_numpy() >= 10
    sr_var = robust_variance(sr[screened]) if screened.sum() > 1 else 0.0
    sr0 = skill.expected_max_sharpe(int(screened.sum()), sr_var)
    psr, dsr = np.full(len(sr), np.nan), np.full(len(sr), np.nan)
    for days in np.unique(n):
        m = n == days
        psr[m] = skill.probabilistic_sharpe_ratio(sr[m], int(days), g3[m], g4[m])
        dsr[m] = skill.probabilistic_sharpe_ratio(sr[m], int(days), g3[m], g4[m], sr_benchmark=sr0)
    min_trl = np.minimum(np.asarray(skill.min_track_record_length(sr, g3, g4), dtype=float), 1e6)
    # Daily PnL matrix (trader × day, zeros on idle days), newest day first.
    tids = out["tid"].to_numpy()
    row = np.full(int(tids.max()) + 1, -1)
    row[tids] = np.arange(len(tids))
    matrix = np.zeros((len(tids), lookback_days))
    matrix[row[daily["tid"].to_numpy()], daily["day"].to_numpy()] = daily["x"].to_numpy()
    pvals = skill.stationary_bootstrap_pvalues(matrix, n, n_boot=n_boot, seed=as_of % (2**31))
    return out.with_columns(
        psr=pl.Series(psr),
        dsr=pl.Series(dsr),
        min_trl_days=pl.Series(min_trl),
        bootstrap_p=pl.Series(pvals),
    )


def _open_book(positions: pl.DataFrame | None, prices: pl.DataFrame | None, as_of: int) -> pl.DataFrame:
    """Positions open at `as_of` and how many carry an unrealized loss beyond 20 % of collateral,
    marked at the last price the events revealed for the pair before `as_of`."""
    empty = pl.DataFrame(
        schema={"trader": pl.Utf8, "open_positions": pl.Float64, "open_underwater_share": pl.Float64}
    )
    if positions is None or positions.is_empty():
        return empty
    live = positions.filter(
        (pl.col("open_ts") < as_of) & (pl.col("closed_ts").is_null() | (pl.col("closed_ts") >= as_of))
    )
    if live.is_empty():
        return empty
    if prices is not None and not prices.is_empty():
        marks = prices.filter(pl.col("ts") < as_of).group_by("pair_index").agg(mark=pl.col("price").last())
        live = live.join(marks, on="pair_index", how="left")
    else:
        live = live.with_columns(mark=pl.lit(None, pl.Float64))
    sign = pl.when(pl.col("side") == "long").then(1.0).otherwise(-1.0)
    upnl = sign * (pl.col("mark") / pl.col("open_price") - 1) * pl.col("leverage")
    return live.group_by("trader").agg(
        open_positions=pl.len().cast(pl.Float64),
        open_underwater_share=(upnl < -0.2).fill_null(False).cast(pl.Float64).mean(),
    )


def forward_outcomes(trades: pl.DataFrame, as_of: int, horizon_days: int = 7) -> pl.DataFrame:
    """Labels: what each trader realized in [as_of, as_of + horizon): net PnL (USDC), trades, and
    the return a fixed-collateral follower would have had (mean return on collateral per close).
    Only labels whose window is complete may train a model; callers check `as_of + horizon`."""
    end = as_of + horizon_days * DAY
    w = trades.filter((pl.col("ts") >= as_of) & (pl.col("ts") < end))
    return w.group_by("trader").agg(
        pnl_fwd=pl.col("realized").sum(),
        trades_fwd=pl.len(),
        # A follower who starts copying at as_of copies only positions opened from then on.
        copy_roc_fwd=pl.col("roc").filter(pl.col("open_ts") >= as_of).sum(),
        copy_trades_fwd=(pl.col("open_ts") >= as_of).sum(),
    )
