"""The scheduler's jobs (`vanta scheduler`): retraining through papermill, and the regime and
analytics refresh that writes `market_regime_data` and `trader_analytics`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from research.pipeline import ANALYZER_MODEL, REGIME_MODEL
from serving.process import vanta_command
from serving.results import write_analytics, write_regimes
from serving.scheduler import JobFailed, Summary, run_command
from serving.state import ServingState, latest_tag

# The papermill research run (executed notebooks and the HTML report), then `vanta train`, which
# registers only the models that beat their baselines walk-forward.
RETRAIN_STEPS: tuple[tuple[str, ...], ...] = (("research", "run"), ("train",))


async def retrain(
    *,
    timeout_s: float,
    steps: tuple[tuple[str, ...], ...] = RETRAIN_STEPS,
    env: dict[str, str] | None = None,
) -> Summary:
    summary: dict[str, object] = {}
    for step in steps:
        try:
            summary[" ".join(step)] = dict(
                await run_command(vanta_command(*step), timeout_s=timeout_s, env=env)
            )
        except (JobFailed, FileNotFoundError) as exc:
            raise JobFailed(f"vanta {' '.join(step)}: {exc}") from None
    return summary


def store_tags() -> list[str]:
    """What the store's `latest` points at: what the service serves (it reloads within seconds)."""
    return [t for t in (latest_tag(ANALYZER_MODEL), latest_tag(REGIME_MODEL)) if t]


def retrain_alert(serving: Callable[[], list[str]] = store_tags) -> Callable[[BaseException], Awaitable[str]]:
    """The admins' message for a failed retraining: what failed, and that what is served stays."""

    async def text(exc: BaseException) -> str:
        tags = await asyncio.to_thread(serving)
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        kept = ", ".join(tags) if tags else "no registered model (skill statistics only)"
        return f"Model retraining failed at {when}: {exc}. Nothing was registered; the service keeps serving {kept}."

    return text


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
