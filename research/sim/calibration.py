"""Is the planted truth recoverable from what the simulator emits? Group comparisons by archetype,
computed only from the events (through the exact ledger), with confidence intervals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats as st

from data.event_frames import events_from_frame
from research.ledger import PositionLedger
from research.stats import closes_frame


def per_trader_outcomes(events: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Per trader: net realized PnL, return on collateral, win rate, worst close; with the truth."""
    closes = PositionLedger().apply_all(events_from_frame(events))
    frame = closes_frame(closes).with_columns(pl.col("trader").cast(pl.Utf8))
    per = (
        frame.group_by("trader")
        .agg(
            net_pnl_usdc=pl.col("realized_usdc").sum(),
            collateral_usdc=pl.col("collateral_usdc").sum(),
            win_rate=(pl.col("realized_usdc") > 0).mean(),
            worst_roc=(pl.col("realized_usdc") / pl.col("collateral_usdc")).min(),
            # Expected shortfall: the mean return of the worst 5 % of closes (at least one).
            tail_roc=(pl.col("realized_usdc") / pl.col("collateral_usdc"))
            .sort()
            .head((pl.len() * 0.05).ceil().cast(pl.UInt32))
            .mean(),
            closes=pl.len(),
        )
        .with_columns(roc=pl.col("net_pnl_usdc") / pl.col("collateral_usdc"))
    )
    return per.join(truth.select("trader", "archetype", "edge"), on="trader")


@dataclass(frozen=True)
class Difference:
    mean_a: float
    mean_b: float
    low: float  # 95 % Welch confidence interval of mean_a - mean_b
    high: float


def mean_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> Difference:
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = np.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = st.t.ppf(0.5 + confidence / 2, dof) * se
    diff = a.mean() - b.mean()
    return Difference(float(a.mean()), float(b.mean()), float(diff - half), float(diff + half))
