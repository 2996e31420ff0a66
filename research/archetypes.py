"""Trading-style archetypes: KMeans on standardized style features (how someone trades, never how
well), clusters named by documented centroid rules.

Naming. Each centroid (in standard deviations from the population) gets a score per name, and the
five clusters are matched one-to-one to the five names maximizing the total (Hungarian method):

- Volume Hunter: many trades a day, short holds.
- Conservative Scalper: short holds at low leverage.
- Aggressive Swinger: long holds at high leverage.
- Risk Manager: stop losses and take profits set on most trades.
- Precision Trader: few trades, concentrated on few pairs.

Traders with fewer than `MIN_TRADES` closes are "not enough trades". Stability across refits is
the adjusted Rand index between two consecutive weekly fits' labels of the same traders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

MIN_TRADES = 10
NOT_ENOUGH = "not enough trades"
STYLE_FEATURES = [
    "lev_mean",
    "log_hold_median_h",
    "log_trades_per_day",
    "tp_share",
    "sl_share",
    "pair_concentration",
    "size_cv",
    "long_share",
]
# Score of a centroid for each name: weights on its standardized style features.
NAME_RULES: dict[str, dict[str, float]] = {
    "Volume Hunter": {"log_trades_per_day": 1.0, "log_hold_median_h": -0.5},
    "Conservative Scalper": {"log_hold_median_h": -1.0, "lev_mean": -1.0},
    "Aggressive Swinger": {"log_hold_median_h": 1.0, "lev_mean": 1.0},
    "Risk Manager": {"sl_share": 1.0, "tp_share": 0.5},
    "Precision Trader": {"log_trades_per_day": -1.0, "pair_concentration": 0.5},
}
ARCHETYPES = (*NAME_RULES, NOT_ENOUGH)


@dataclass
class ArchetypeModel:
    scaler: StandardScaler
    kmeans: KMeans
    names: list[str]  # name of cluster i

    @classmethod
    def fit(cls, features: pl.DataFrame, *, seed: int = 0) -> ArchetypeModel | None:
        """None when fewer traders with enough trades than clusters: nothing to cluster."""
        pool = features.filter(pl.col("trades") >= MIN_TRADES)
        k = len(NAME_RULES)
        if pool.height < 2 * k:
            return None
        x = _style(pool)
        scaler = StandardScaler().fit(x)
        kmeans = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(scaler.transform(x))
        scores = np.array(
            [
                [sum(w * c[STYLE_FEATURES.index(f)] for f, w in rule.items()) for rule in NAME_RULES.values()]
                for c in kmeans.cluster_centers_
            ]
        )
        rows, cols = linear_sum_assignment(-scores)
        names = [""] * k
        for r, c in zip(rows, cols, strict=True):
            names[r] = list(NAME_RULES)[c]
        return cls(scaler, kmeans, names)

    def clusters(self, features: pl.DataFrame) -> np.ndarray:
        return self.kmeans.predict(self.scaler.transform(_style(features)))

    def label(self, features: pl.DataFrame) -> list[str]:
        if features.is_empty():
            return []
        names = np.array(self.names, dtype=object)[self.clusters(features)]
        enough = features["trades"].to_numpy() >= MIN_TRADES
        return [str(n) if ok else NOT_ENOUGH for n, ok in zip(names, enough, strict=True)]


def _style(features: pl.DataFrame) -> np.ndarray:
    x = features.select(STYLE_FEATURES).to_numpy().astype(float)
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def refit_stability(earlier: pl.DataFrame, later: pl.DataFrame, *, seed: int = 0) -> float | None:
    """Adjusted Rand index between a fit on `earlier` and a fit on `later` labelling the traders of
    `later` who have enough trades (1 = same partition, 0 = chance). None if either cannot fit."""
    a, b = ArchetypeModel.fit(earlier, seed=seed), ArchetypeModel.fit(later, seed=seed)
    pool = later.filter(pl.col("trades") >= MIN_TRADES)
    if a is None or b is None or pool.is_empty():
        return None
    return float(adjusted_rand_score(a.label(pool), b.label(pool)))
