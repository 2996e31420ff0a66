"""Run a simulation: population, prices, traders (across processes), ordered output frames."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from data.event_frames import EVENT_SCHEMA
from data.pairs import Pair, builtin_catalogue, pair_by_symbol
from research.sim.engine import TraderResult, simulate_trader
from research.sim.population import TraderTruth, draw_population
from research.sim.prices import PricePath, load_paths

_KIND_ORDER = {"open": 0, "partial_close": 1, "tp": 2, "sl": 2, "close": 2, "liquidation": 2}


@dataclass
class Simulation:
    events: pl.DataFrame
    truth: pl.DataFrame
    paths: dict[str, PricePath]
    seconds: float

    def write(self, out: Path) -> dict[str, Path]:
        out.mkdir(parents=True, exist_ok=True)
        files = {"events": out / "events.parquet", "truth": out / "truth.parquet"}
        # No statistics or timestamps that vary run to run: same seed, same bytes.
        self.events.write_parquet(files["events"], compression="zstd", statistics=False)
        self.truth.write_parquet(files["truth"], compression="zstd", statistics=False)
        return files


# Inherited by forked workers (never pickled): the work of one simulation.
_JOB: dict[str, object] = {}


def _run_chunk(bounds: tuple[int, int]) -> list[TraderResult]:
    population: list[TraderTruth] = _JOB["population"]  # type: ignore[assignment]
    kwargs = _JOB["kwargs"]  # type: ignore[assignment]
    return [simulate_trader(population[i], **kwargs) for i in range(*bounds)]  # type: ignore[arg-type]


def simulate(
    n_traders: int,
    days: int,
    seed: int,
    *,
    prices: str | Path | None = "synthetic",
    catalogue: dict[int, Pair] | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    shares: dict[str, float] | None = None,
) -> Simulation:
    started = time.perf_counter()
    catalogue = catalogue or builtin_catalogue()
    paths = load_paths(days, seed, prices)
    pairs = {s: pair_by_symbol(catalogue, s) for s in paths}
    population = draw_population(n_traders, seed, shares)
    start_ts = min(p.start_ts for p in paths.values())
    kwargs = {"paths": paths, "pairs": pairs, "seed": seed, "start_ts": start_ts, "days": days}
    workers = max(1, min(workers or os.cpu_count() or 1, n_traders))
    chunk = max(1, min(500, n_traders // (workers * 4) or 1))
    bounds = [(i, min(n_traders, i + chunk)) for i in range(0, n_traders, chunk)]
    results: list[TraderResult] = []
    _JOB.update(population=population, kwargs=kwargs)
    try:
        if workers == 1:
            for b in bounds:
                results += _run_chunk(b)
                if progress:
                    progress(len(results), n_traders)
        else:
            with mp.get_context("fork").Pool(workers) as pool:
                for part in pool.imap(_run_chunk, bounds):  # ordered: output is independent of scheduling
                    results += part
                    if progress:
                        progress(len(results), n_traders)
    finally:
        _JOB.clear()
    rows = [row for r in results for row in r.rows]
    events = pl.DataFrame(rows, schema=EVENT_SCHEMA, orient="row")
    events = (
        events.with_columns(_k=pl.col("kind").replace_strict(_KIND_ORDER, return_dtype=pl.Int8))
        .sort(["ts", "_k", "event_id"])
        .drop("_k")
    )
    truth = pl.DataFrame(
        [
            {
                **p.record(),
                "trades": r.trades,
                "quit_ts": r.quit_ts,
                "final_balance_usdc": r.final_balance_usdc,
            }
            for p, r in zip(population, results, strict=True)
        ],
        infer_schema_length=None,
    )
    return Simulation(events, truth, paths, time.perf_counter() - started)
