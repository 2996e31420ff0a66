"""The current market regime per pair, from live prices: Pyth samples and the chain's own fills
(`data.prices.price_history`), as 15-minute closes, through the registered regime model.

The model reads `research.regime.hourly_observations` of 15-minute closes, whose volatility
normalization looks back 30 days, so a pair needs about eight days of prices before it has a
regime at all; the window read here is that lookback plus a day. The answer for a pair is its
last completed hour: `as_of` is that hour's end, so a caller can tell a stale regime (prices
stopped arriving) from a current one.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from research import regime
from serving.population import Model
from serving.schemas import RegimeState

BAR_SECONDS = 900
LOOKBACK_SECONDS = (regime.NORM_HOURS + 24) * 3600


def bars_15m(history: pl.DataFrame, pair: str) -> pl.DataFrame:
    """15-minute closes (ts = bar open) of one pair: each bar's last price, carried forward over
    bars without one, as `research.regime.bars_from_events` builds them from an event frame."""
    p = history.filter(pl.col("pair") == pair)
    if p.is_empty():
        return pl.DataFrame(schema={"ts": pl.Int64, "close": pl.Float64})
    last = (
        p.with_columns(bar=(pl.col("ts") // BAR_SECONDS) * BAR_SECONDS)
        .sort("ts", maintain_order=True)
        .group_by("bar")
        .agg(close=pl.col("price").last())
    )
    grid = pl.DataFrame({"ts": np.arange(int(last["bar"].min()), int(last["bar"].max()) + 1, BAR_SECONDS)})
    return grid.join(last.rename({"bar": "ts"}), on="ts", how="left").with_columns(
        pl.col("close").forward_fill()
    )


def current_regimes(model: Model, history: pl.DataFrame) -> dict[str, RegimeState]:
    """The latest classified hour of every pair in `history` that has enough of it."""
    out: dict[str, RegimeState] = {}
    for pair in sorted(set(history["pair"].to_list())):
        obs = regime.hourly_observations(bars_15m(history, pair))
        if obs.is_empty():
            continue
        last = model.obj.classify(obs).row(-1, named=True)
        vol = float(last["vol_1h"])
        out[pair] = RegimeState(
            pair=pair,
            color=last["color"],
            volatility_1h=vol if np.isfinite(vol) else None,
            trend=last["trend"],
            confidence=float(last["confidence"]),
            as_of=int(last["ts"]),
            model=model.tag,
            probabilities={c: round(float(last[f"p_{c}"]), 6) for c in regime.COLORS if f"p_{c}" in last},
        )
    return out
