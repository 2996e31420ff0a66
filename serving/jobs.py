"""The scheduler's jobs (`vanta scheduler`): retraining through papermill, and the regime and
analytics refresh that writes `market_regime_data` and `trader_analytics`."""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from serving.results import write_analytics, write_regimes
from serving.scheduler import JobFailed, Summary, run_command
from serving.state import ANALYZER_MODEL, REGIME_MODEL, ServingState, latest_tag

# The papermill research run (executed notebooks and the HTML report), then `vanta train`, which
# registers only the models that beat their baselines walk-forward.
RETRAIN_STEPS: tuple[tuple[str, ...], ...] = (("research", "run"), ("train",))


def vanta_command(*args: str) -> list[str]:
    """The `vanta` console script of this interpreter's environment (not whatever is on PATH)."""
    beside = Path(sys.executable).with_name("vanta")
    found = str(beside) if beside.exists() else shutil.which("vanta")
    if found is None:
        raise JobFailed("the vanta command is not installed beside this Python")
    return [found, *args]


async def retrain(*, timeout_s: float, steps: tuple[tuple[str, ...], ...] = RETRAIN_STEPS) -> Summary:
    summary: dict[str, object] = {}
    for step in steps:
        try:
            summary[" ".join(step)] = dict(await run_command(vanta_command(*step), timeout_s=timeout_s))
        except JobFailed as exc:
            raise JobFailed(f"vanta {' '.join(step)}: {exc}") from None
    return summary


async def retrain_alert(exc: BaseException) -> str:
    """What the admins read: what failed, and that nothing changed in what is served."""
    serving = [t for t in (latest_tag(ANALYZER_MODEL), latest_tag(REGIME_MODEL)) if t]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    kept = ", ".join(serving) if serving else "no registered model (skill statistics only)"
    return (
        f"Model retraining failed at {when}: {exc}. Nothing was registered; the service keeps serving {kept}."
    )


async def refresh(state: ServingState, pool: asyncpg.Pool) -> Summary:
    """Recompute the traders and regimes from the store's latest models and write them out."""
    await state.refresh(force=True)
    if state.problems:
        raise JobFailed("; ".join(state.problems.values()))
    population = state.population
    assert population is not None
    async with pool.acquire() as conn:
        traders = await write_analytics(conn, population)
        regimes = await write_regimes(conn, state.regimes.values())
    return {
        "traders": traders,
        "regime_rows": regimes,
        "as_of": population.as_of,
        "models": state.model_versions(),
    }
