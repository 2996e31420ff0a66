"""Benchmarks of the research core: ledgers and the leaderboard (`vanta bench`)."""

from __future__ import annotations

import os
import time
from decimal import Decimal

import numpy as np
import polars as pl

from data.events import EventKind, Side, TradeEvent
from research import stats
from research.fifo import FifoLedger, totals_sharded
from research.ledger import PositionLedger


def _fills(n: int, n_traders: int, seed: int) -> tuple[list[str], list[str], list[int], list[int], list[int]]:
    rng = np.random.default_rng(seed)
    traders = [f"0x{t:040x}" for t in rng.integers(0, n_traders, n)]
    pairs = ["BTC/USD" if p else "ETH/USD" for p in rng.integers(0, 2, n)]
    qtys = (rng.choice([-1, 1], n) * rng.integers(1, 10**8, n)).tolist()
    prices = rng.integers(10**14, 10**15, n).tolist()
    fees = rng.integers(0, 10**16, n).tolist()
    return traders, pairs, qtys, prices, fees


def bench_fifo(n: int = 2_000_000) -> dict[str, float]:
    cols = _fills(n, 10_000, 1)
    ledger = FifoLedger()
    t0 = time.perf_counter()
    ledger.apply_arrays(*cols)
    single = n / (time.perf_counter() - t0)
    workers = os.cpu_count() or 1
    t0 = time.perf_counter()
    totals = totals_sharded(*cols, workers=workers)
    sharded = n / (time.perf_counter() - t0)
    assert len(totals) == len(ledger.books)
    return {
        "ledger_fills_per_s": round(sharded),
        "ledger_fills_per_s_one_core": round(single),
        "ledger_workers": workers,
    }


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


def run() -> dict[str, float]:
    return {**bench_fifo(), **bench_position_ledger(), **bench_leaderboard()}
