"""Benchmarks of the analyzer (`vanta bench`): features for 10,000 traders × 90 days, and scoring
10,000 traders in one batch in process.

The scoring benchmark uses a real analyzer, fitted on a small simulated population;
the 10,000 rows it scores are benchmark input (random closes shaped like real ones), so only the
time is reported, never the scores.
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl

from research import features as F

DAY = 86_400


def synthetic_trades(n_traders: int, days: int, closes_per_day: float, seed: int) -> pl.DataFrame:
    """Benchmark input only: a trade table (`features.trade_table` layout) of random closes."""
    rng = np.random.default_rng(seed)
    n = int(n_traders * days * closes_per_day)
    collateral = rng.integers(10, 5_000, n).astype(float)
    lev = rng.uniform(1, 50, n)
    hold = rng.integers(60, 3 * DAY, n)
    ts = rng.integers(hold.max(), days * DAY, n)
    roc = rng.standard_t(3, n) * 0.05
    is_long = rng.random(n) < 0.5
    price = rng.uniform(100, 100_000, n)
    return pl.DataFrame(
        {
            "trader": np.char.add("0x", np.char.zfill(rng.integers(0, n_traders, n).astype(str), 40)),
            "ts": ts,
            "open_ts": ts - hold,
            "pair_index": rng.integers(0, 20, n).astype(np.int32),
            "is_long": is_long,
            "kind": np.where(rng.random(n) < 0.01, "liquidation", "close"),
            "leverage": lev,
            "collateral": collateral,
            "notional": collateral * lev,
            "realized": roc * collateral,
            "hold_s": hold,
            "open_price": price,
            "close_price": price * (1 + np.where(is_long, 1, -1) * roc / lev),
            "tp_set": rng.random(n) < 0.5,
            "sl_set": rng.random(n) < 0.5,
            "fee": collateral * lev * 9e-4,
            "rollover": np.zeros(n),
            "roc": roc,
        }
    ).sort("trader", "ts")


def bench_features(n_traders: int = 10_000, days: int = 90) -> tuple[dict[str, float], pl.DataFrame]:
    trades = synthetic_trades(n_traders, days, 3.0, seed=11)
    runs, cpu, feats = [], [], pl.DataFrame()
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        feats = F.trader_features(trades, days * DAY)
        runs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert feats.height == n_traders
    figures = {
        "features_10k_traders_s": round(min(runs), 3),
        # CPU seconds of all threads: what the run costs whatever else the machine is doing.
        "features_10k_traders_cpu_s": round(min(cpu), 3),
        "features_closes": trades.height,
    }
    return figures, feats


def bench_scoring(feats: pl.DataFrame) -> dict[str, float]:
    from research.analyzer import fit_analyzer, score_frame
    from research.forecast import as_of_dates, build_panel
    from research.sim.run import simulate

    # A real analyzer of the registered shape, fitted on a small simulated population (whether or
    # not it would beat its baselines there does not change how long scoring takes).
    sim = simulate(400, 56, seed=5, prices="synthetic")
    trades = F.trade_table(sim.events)
    panel = build_panel(trades, as_of_dates(trades))
    analyzer = fit_analyzer(panel, feats.head(2000))
    score_frame(feats.head(100), analyzer)  # warm caches
    runs, cpu = [], []
    for _ in range(5):
        t0, c0 = time.perf_counter(), time.process_time()
        rows = score_frame(feats, analyzer)
        runs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert rows.height == feats.height
    return {
        "analyzer_batch_10k_ms": round(min(runs) * 1000, 1),
        "analyzer_batch_10k_ms_median": round(float(np.median(runs)) * 1000, 1),
        "analyzer_batch_10k_cpu_ms": round(min(cpu) * 1000, 1),
    }


def run() -> dict[str, float]:
    figures, feats = bench_features()
    return {**figures, **bench_scoring(feats)}
