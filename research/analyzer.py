"""The trader analyzer: one object that scores a frame of point-in-time features.

`Analyzer` bundles what `vanta train` fits (the forecaster, the anomaly model, the archetype
model) with its training window; `score_frame` turns features into the rows `vanta analyze`
prints and the serving layer returns. With no analyzer registered, `score_frame(features, None)`
still answers from the skill statistics alone (score = 100 × PSR, forecasts empty) and says so in
`score_source`.

The copyability score is 100 × P(a fixed-collateral follower of the trader's next week ends
ahead), calibrated. Flagged traders rank after every unflagged one (a flagged trader never tops
the leaderboard), and rows keep PSR, DSR, MinTRL and the trade count beside the rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from research import anomaly, archetypes
from research.features import FEATURES
from research.forecast import Forecaster

ROW_COLUMNS = (
    "trader",
    "rank",
    "score",
    "p_win_7d",
    "expected_pnl_7d_usdc",
    "anomaly",
    "anomaly_score",
    "flags",
    "archetype",
    "psr",
    "dsr",
    "trades",
)
SCORE_FROM_MODEL = "model"
SCORE_FROM_SKILL = "skill_stats_only"


@dataclass
class Analyzer:
    forecaster: Forecaster
    anomaly: anomaly.AnomalyModel
    archetypes: archetypes.ArchetypeModel | None
    train_start: int
    train_end: int
    features: list[str] = field(default_factory=lambda: list(FEATURES))

    def predict(self, features: pl.DataFrame) -> pl.DataFrame:
        """Model outputs per trader: p_win_7d, expected_pnl_7d_usdc, p_copy_win, anomaly_score, archetype."""
        pred = self.forecaster.predict(features)
        arche = (
            self.archetypes.label(features)
            if self.archetypes is not None
            else [archetypes.NOT_ENOUGH] * features.height
        )
        return pred.with_columns(
            anomaly_score=pl.Series(self.anomaly.score(features)),
            anomaly_threshold=pl.lit(self.anomaly.threshold),
            archetype=pl.Series(arche, dtype=pl.Utf8),
        )


def score_frame(
    features: pl.DataFrame, analyzer: Analyzer | None, *, eligible: pl.Series | None = None, seed: int = 0
) -> pl.DataFrame:
    """The analyze rows (ROW_COLUMNS plus min_trl_days and score_source), best first.

    Without an analyzer the anomaly and archetype models are fit on the population being scored
    (they are unsupervised) when it is large enough, else left empty; forecasts stay null."""
    if features.is_empty():
        return pl.DataFrame(schema={c: pl.Utf8 for c in ROW_COLUMNS})
    flags = anomaly.flag_frame(features)
    if analyzer is not None:
        pred = analyzer.predict(features)
        score = pl.col("p_copy_win") * 100
        source = SCORE_FROM_MODEL
    else:
        pred = _unsupervised(features, seed)
        score = pl.col("psr").fill_null(0.0) * 100
        source = SCORE_FROM_SKILL
    rows = (
        features.select("trader", "psr", "dsr", "min_trl_days", "trades")
        .join(pred, on="trader", how="left")
        .join(flags.select("trader", "flags"), on="trader", how="left")
        .with_columns(score=score, score_source=pl.lit(source))
        .with_columns(
            anomaly=(pl.col("flags").list.len() > 0)
            | (pl.col("anomaly_score") >= pl.col("anomaly_threshold")).fill_null(False),
            trades=pl.col("trades").cast(pl.Int64),
        )
    )
    if eligible is not None:
        rows = rows.filter(pl.col("trader").is_in(eligible.implode()))
    rows = rows.sort(
        [pl.col("flags").list.len() > 0, "score", "trader"], descending=[False, True, False], nulls_last=True
    ).with_columns(rank=pl.int_range(1, pl.len() + 1))
    return rows.select(*ROW_COLUMNS, "min_trl_days", "score_source")


def _unsupervised(features: pl.DataFrame, seed: int) -> pl.DataFrame:
    out = features.select("trader").with_columns(
        p_win_7d=pl.lit(None, pl.Float64),
        expected_pnl_7d_usdc=pl.lit(None, pl.Float64),
        p_copy_win=pl.lit(None, pl.Float64),
    )
    if features.height >= 20:
        model = anomaly.AnomalyModel.fit(features, seed=seed)
        out = out.with_columns(
            anomaly_score=pl.Series(model.score(features)), anomaly_threshold=pl.lit(model.threshold)
        )
    else:
        out = out.with_columns(
            anomaly_score=pl.lit(None, pl.Float64), anomaly_threshold=pl.lit(None, pl.Float64)
        )
    arche = archetypes.ArchetypeModel.fit(features, seed=seed)
    labels = arche.label(features) if arche is not None else [archetypes.NOT_ENOUGH] * features.height
    return out.with_columns(archetype=pl.Series(labels, dtype=pl.Utf8))


def eligible_traders(
    trades: pl.DataFrame, as_of: int, *, active_hours: int, min_trades_30d: int, min_volume_30d_usd: int
) -> pl.Series:
    """Traders who pass the leader eligibility settings at `as_of` (LEADER_ACTIVE_HOURS,
    LEADER_MIN_TRADES_30D, LEADER_MIN_VOLUME_30D_USD): active lately, enough trades and volume."""
    w = trades.filter((pl.col("ts") < as_of) & (pl.col("ts") >= as_of - 30 * 86_400))
    ok = w.group_by("trader").agg(n=pl.len(), volume=pl.col("notional").sum(), last=pl.col("ts").max())
    return ok.filter(
        (pl.col("last") >= as_of - active_hours * 3600)
        & (pl.col("n") >= min_trades_30d)
        & (pl.col("volume") >= min_volume_30d_usd)
    )["trader"]


def fit_analyzer(panel: pl.DataFrame, latest: pl.DataFrame, *, seed: int = 0) -> Analyzer:
    """Fit on every panel row whose label is complete; anomaly and archetypes on the latest features."""
    train = panel.filter(pl.col("label_complete"))
    forecaster = Forecaster.fit(train, seed=seed)
    return Analyzer(
        forecaster=forecaster,
        anomaly=anomaly.AnomalyModel.fit(latest, seed=seed),
        archetypes=archetypes.ArchetypeModel.fit(latest, seed=seed),
        train_start=int(train["as_of"].min()),
        train_end=int(train["as_of"].max()),
    )


def json_rows(rows: pl.DataFrame) -> list[dict[str, object]]:
    """Rows as plain JSON values: NaN becomes null, floats rounded for people and diffs."""
    out = []
    for r in rows.iter_rows(named=True):
        rec: dict[str, object] = {}
        for k in (*ROW_COLUMNS, "score_source"):
            v = r.get(k)
            if isinstance(v, float):
                v = None if not np.isfinite(v) else round(v, 6)
            rec[k] = v
        out.append(rec)
    return out
