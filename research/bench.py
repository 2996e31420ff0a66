"""Benchmarks of the research core: ledgers and the leaderboard (`vanta bench`)."""

from __future__ import annotations

import time
from decimal import Decimal

import numpy as np
import polars as pl

from data.events import EventKind, Side, TradeEvent
from research import stats
from research.fifo import FifoLedger
from research.ledger import PositionLedger


def _fills(n: int, n_traders: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "trader": [f"0x{t:040x}" for t in rng.integers(0, n_traders, n)],
            "pair": np.where(rng.integers(0, 2, n) == 1, "BTC/USD", "ETH/USD"),
            "qty": rng.choice([-1, 1], n) * rng.integers(1, 10**8, n),  # up to 1 BTC in 1e-8
            "price": rng.integers(10**14, 10**15, n),  # 10,000 - 100,000 USD in 1e-10
            "fee": rng.integers(0, 10**11, n),  # up to 10 USD in 1e-10
        }
    )


def bench_fifo(n: int = 2_000_000) -> dict[str, float]:
    fills = _fills(n, 10_000, 1)
    FifoLedger.from_frame(fills.head(1000))  # compile (cached on disk after the first run)
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        ledger = FifoLedger.from_frame(fills)
        runs.append(time.perf_counter() - t0)
    python = FifoLedger()
    sample = fills.head(200_000)
    t0 = time.perf_counter()
    python.apply_arrays(*(sample[c].to_list() for c in ("trader", "pair", "qty", "price", "fee")))
    python_rate = sample.height / (time.perf_counter() - t0)
    assert len(ledger.books) == 20_000
    return {"ledger_fills_per_s": round(n / min(runs)), "ledger_fills_per_s_python_path": round(python_rate)}


def bench_position_ledger(n_positions: int = 200_000) -> dict[str, float]:
    events = []
    for i in range(n_positions):
        trader = f"0x{i % 5000:040x}"
        common = dict(
            venue="avantis",
            source="bench",
            trader=trader,
            pair_index=i % 3,
            trade_index=i % 7,
            open_ts=i,
            side=Side.LONG,
            leverage=Decimal(10),
        )
        events.append(
            TradeEvent(
                event_id=f"o{i}",
                kind=EventKind.OPEN,
                ts=i,
                collateral_usdc=100_000_000,
                price=Decimal(100),
                open_fee_usdc=450_000,
                **common,
            )
        )
        events.append(
            TradeEvent(
                event_id=f"c{i}",
                kind=EventKind.CLOSE,
                ts=i + 60,
                collateral_usdc=100_000_000,
                size_closed_usdc=100_000_000,
                usdc_sent=101_000_000,
                price=Decimal(101),
                **common,
            )
        )
    ledger = PositionLedger()
    t0 = time.perf_counter()
    ledger.apply_all(events)
    return {"position_ledger_events_per_s": round(len(events) / (time.perf_counter() - t0))}


def synthetic_closes(n_traders: int, days: int, closes_per_day: float, seed: int) -> pl.DataFrame:
    """Benchmark input only: random closes with the shape of the real ones (no model is fit to it)."""
    rng = np.random.default_rng(seed)
    n = int(n_traders * days * closes_per_day)
    notional = rng.integers(100, 50_000, n) * 1_000_000
    lev = rng.uniform(1, 50, n)
    return pl.DataFrame(
        {
            "trader": [f"0x{t:040x}" for t in rng.integers(0, n_traders, n)],
            "ts": rng.integers(0, days * 86_400, n),
            "realized_usdc": (rng.standard_t(3, n) * notional / lev * 0.02).astype(np.int64),
            "notional_usdc": notional,
            "collateral_usdc": (notional / lev).astype(np.int64),
            "leverage": lev,
            "hold_seconds": rng.integers(60, 7 * 86_400, n),
            "pair_index": rng.integers(0, 20, n).astype(np.int32),
            "is_long": rng.random(n) < 0.5,
        },
        schema=stats.CLOSES_SCHEMA,
    )


def bench_leaderboard(n_traders: int = 10_000, days: int = 90) -> dict[str, float]:
    closes = synthetic_closes(n_traders, days, closes_per_day=3, seed=7)
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = stats.trader_stats(closes, as_of=days * 86_400, window_days=days)
        runs.append(time.perf_counter() - t0)
    assert out.height == n_traders
    return {"leaderboard_10k_traders_s": round(min(runs), 3), "leaderboard_closes": closes.height}


def bench_simulator(n_traders: int = 10_000, days: int = 90) -> dict[str, float]:
    from research.sim.run import simulate

    sim = simulate(n_traders, days, seed=1, prices="synthetic")
    return {
        "sim_events_per_s": round(sim.events.height / sim.seconds),
        "sim_10k_traders_90d_s": round(sim.seconds, 1),
        "sim_events": sim.events.height,
    }


def run() -> dict[str, float]:
    return {**bench_fifo(), **bench_position_ledger(), **bench_leaderboard(), **bench_simulator()}
