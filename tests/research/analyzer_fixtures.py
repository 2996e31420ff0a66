"""Small simulated populations shared by the analyzer's tests (simulated once per session)."""

from __future__ import annotations

import functools

import polars as pl

from research.sim.run import simulate


@functools.cache
def small_population(traders: int = 150, days: int = 45, seed: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events, truth): enough weeks for a walk-forward with two folds, in about a second."""
    sim = simulate(traders, days, seed, prices="synthetic", workers=1)
    return sim.events, sim.truth
