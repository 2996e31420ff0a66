"""Regimes from live prices: a pair priced often enough has one (its last completed hour), a pair
priced a few times a day has none rather than a calm regime made of one price carried forward."""

from __future__ import annotations

import numpy as np
import polars as pl

from research import regime
from research.sim.prices import synthetic_paths
from serving.population import Model
from serving.regimes import bars_15m, current_regimes


def test_a_densely_priced_pair_has_a_regime_and_a_sparse_one_has_none() -> None:
    paths = synthetic_paths(45, seed=4)
    candles = {
        s: pl.DataFrame({"ts": p.start_ts + 900 * np.arange(p.bars), "close": p.close / 1e10})
        for s, p in paths.items()
    }
    model = Model(
        "vanta_regime",
        "vanta_regime:t",
        regime.RegimeModel.fit([regime.hourly_observations(c) for c in candles.values()]),
    )
    dense = candles["BTC/USD"].select(
        pair=pl.lit("BTC/USD"), ts=pl.col("ts") + 899, price="close", source=pl.lit("pyth")
    )
    # ETH priced on 1 bar in 8: a trade every two hours.
    sparse = (
        candles["ETH/USD"]
        .gather_every(8)
        .select(pair=pl.lit("ETH/USD"), ts=pl.col("ts") + 899, price="close", source=pl.lit("fill"))
    )
    states = current_regimes(model, pl.concat([dense, sparse]))
    assert list(states) == ["BTC/USD"]
    expected = model.obj.classify(regime.hourly_observations(candles["BTC/USD"])).row(-1, named=True)
    btc = states["BTC/USD"]
    assert (btc.color, btc.as_of, btc.trend) == (expected["color"], expected["ts"], expected["trend"])
    assert btc.confidence == expected["confidence"] and btc.model == "vanta_regime:t"
    assert bars_15m(sparse, "ETH/USD")["priced"].mean() < 0.2
