"""Traders whose record hides risk: named, explainable flags beside an IsolationForest score.

Each flag is a rule over point-in-time features (`research.features`) with its reason in words a
follower understands. The rules describe behaviours, not any simulator's trader types: loss hiding
is the "picking up pennies" profile (trade returns skewed to the left, no stop loss), volume
farming is many very short round trips, martingale sizing is growing the stake after losses,
liquidation-prone is a record of liquidations or leverage near the venue's limits.

Flags need a minimum record (`MIN_TRADES_FOR_FLAGS` closes) so one bad trade flags nobody.
The IsolationForest is fit on the standardized features of the population it scores and gives a
0–1 anomaly score (1 = most isolated); it is unsupervised, so its evaluation is the recall of the
planted cheats among its top scores, reported beside the flags'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler

from research.features import FEATURES

MIN_TRADES_FOR_FLAGS = 20


@dataclass(frozen=True)
class FlagRule:
    name: str
    condition: pl.Expr
    reason: str  # shown to followers: what the record shows and why it matters


FLAG_RULES = (
    FlagRule(
        "loss_hiding",
        (pl.col("roc_skew") <= -1.0) & (pl.col("no_sl_share") >= 0.8) & (pl.col("win_rate") >= 0.4),
        "wins often but small and runs losers without a stop loss: trade returns are strongly "
        "skewed to losses, so a calm record can end in one large loss",
    ),
    FlagRule(
        "wash_trading",
        (pl.col("log_hold_median_h") < np.log(20 / 60 + 1 / 60)) & (pl.col("trades_per_day") >= 3.0),
        "many round trips closed within minutes (median under 20 minutes, 3 or more a day): "
        "volume farming, the profits of which a follower cannot copy after fees and delay",
    ),
    FlagRule(
        "martingale_sizing",
        (pl.col("size_after_loss") >= np.log(1.5)) & (pl.col("trades") >= 2 * MIN_TRADES_FOR_FLAGS),
        "raises the stake by half or more after a losing trade: losses compound",
    ),
    FlagRule(
        "liquidation_prone",
        (pl.col("liquidation_share") >= 0.1) | (pl.col("lev_mean") >= 40),
        "liquidated on 10 % or more of trades, or trades at 40x leverage or more on average: "
        "a small move against the position wipes out the collateral",
    ),
)
FLAG_NAMES = tuple(r.name for r in FLAG_RULES)
REASONS = {r.name: r.reason for r in FLAG_RULES}


def flag_frame(features: pl.DataFrame) -> pl.DataFrame:
    """trader, one boolean column per flag, and `flags` (the names raised, as a list)."""
    enough = pl.col("trades") >= MIN_TRADES_FOR_FLAGS
    out = features.select(
        "trader", *[(enough & r.condition).fill_null(False).alias(r.name) for r in FLAG_RULES]
    )
    names = [pl.when(pl.col(n)).then(pl.lit(n)).otherwise(None) for n in FLAG_NAMES]
    return out.with_columns(flags=pl.concat_list(names).list.drop_nulls())


@dataclass
class AnomalyModel:
    """IsolationForest over standardized features, with the score scale frozen at fit time."""

    scaler: StandardScaler
    forest: IsolationForest
    features: list[str]
    low: float  # raw score of the most normal fitted trader
    high: float  # raw score of the most isolated fitted trader
    threshold: float  # 0–1 score above which a trader counts as an anomaly

    @classmethod
    def fit(cls, features: pl.DataFrame, *, contamination: float = 0.05, seed: int = 0) -> AnomalyModel:
        x = _matrix(features, FEATURES)
        scaler = StandardScaler().fit(x)
        forest = IsolationForest(n_estimators=100, contamination="auto", random_state=seed)
        forest.fit(scaler.transform(x))
        raw = -forest.score_samples(scaler.transform(x))
        low, high = float(raw.min()), float(raw.max())
        scores = (raw - low) / max(high - low, 1e-12)
        threshold = float(np.quantile(scores, 1 - contamination))
        return cls(scaler, forest, list(FEATURES), low, high, threshold)

    def score(self, features: pl.DataFrame) -> np.ndarray:
        raw = -self.forest.score_samples(self.scaler.transform(_matrix(features, self.features)))
        return np.clip((raw - self.low) / max(self.high - self.low, 1e-12), 0.0, 1.0)


def _matrix(features: pl.DataFrame, columns: list[str]) -> np.ndarray:
    x = features.select(columns).to_numpy().astype(float)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    # Heavy-tailed money columns would dominate distances: compress them symmetrically.
    return np.sign(x) * np.log1p(np.abs(x))


def detection_rates(flags: pl.DataFrame, labels: pl.DataFrame, positives: dict[str, str]) -> dict[str, float]:
    """Recall of each flag on the traders labelled with its planted kind, and the false-positive
    rate of the union of these flags on everyone else. `labels` has trader and `label`;
    `positives` maps flag name to the label it should catch (e.g. {"wash_trading": "wash"})."""
    j = flags.join(labels, on="trader")
    planted = pl.col("label").is_in(list(positives.values()))
    caught = pl.any_horizontal([pl.col(f) & (pl.col("label") == lab) for f, lab in positives.items()])
    raised = pl.any_horizontal([pl.col(f) for f in positives])
    out = {
        "recall": float(j.filter(planted).select(caught.mean()).item() or 0.0),
        "fpr": float(j.filter(~planted).select(raised.mean()).item() or 0.0),
        "planted": int(j.filter(planted).height),
        "others": int(j.filter(~planted).height),
    }
    for f, lab in positives.items():
        out[f"recall_{f}"] = float(j.filter(pl.col("label") == lab).select(pl.col(f).mean()).item() or 0.0)
    return out
