"""`vanta demo` step: the BentoML service on the demo's population and the models the training
step registered; a few answers through the typed client, then the scheduler's refresh (regimes and
trader analytics written to PostgreSQL). The service is stopped at the end of the step."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from infra.progress import progress_bar
from infra.runtime import Services

if TYPE_CHECKING:
    from serving.process import ServiceProcess


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def demo_service(services: Services, log_name: str) -> AsyncIterator[tuple[ServiceProcess, float]]:
    """The real `vanta serve` on a free port over the demo's database and model store, ready when
    entered (with its cold start in seconds) and stopped, its whole process tree, when left."""
    from serving import registry
    from serving.process import ServiceProcess

    settings = services.settings
    store = registry.configure(settings.vanta_home)
    env = {
        **os.environ,
        "DATABASE_URL": services.database_url,
        "VANTA_HOME": str(settings.vanta_home),
        "BENTOML_HOME": str(store),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    if services.redis_url:
        env["REDIS_URL"] = services.redis_url
    service = ServiceProcess(_free_port(), env, settings.vanta_home / "logs" / log_name)
    try:
        with progress_bar("starting the BentoML service", None):
            service.start()
            cold_start_s = await service.wait_ready()
        yield service, cold_start_s
    finally:
        service.stop()


async def serve_and_ask(services: Services) -> dict[str, Any]:
    from serving.client import ServingClient

    out: dict[str, Any] = {}
    async with demo_service(services, "serve-demo.log") as (service, cold_start_s):
        out.update(url=service.url, log=str(service.log_path), cold_start_s=round(cold_start_s, 1))
        async with ServingClient(service.url, timeout_s=30) as client:
            answers = {
                "health": await client.health(),
                "page": await client.leaderboard(page_size=5),
                "regimes": await client.regime(),
                "opportunities": await client.opportunities(limit=5, min_p_win=0.5),
            }
            page = answers["page"]
            rows = getattr(page, "rows", [])
            answers["card"] = await client.trader(rows[0].trader) if rows else None
            started = time.perf_counter()
            for row in rows:
                await client.trader(row.trader)
            out["card_ms_each"] = round((time.perf_counter() - started) * 1000 / max(1, len(rows)), 1)
        out.update(_describe(answers))
        out["refresh"] = await _refresh(services)
        out["summary"].append(
            f"Refresh: {out['refresh'].get('traders', 0)} trader analytics and "
            f"{out['refresh'].get('regime_rows', 0)} regime rows written"
            if "failed" not in out["refresh"]
            else f"Refresh failed: {out['refresh']['failed']}"
        )
    out["summary"].insert(0, f"BentoML service: ready in {out['cold_start_s']} s at {out['url']} (stopped)")
    return out


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _describe(answers: dict[str, Any]) -> dict[str, Any]:
    """The figures (`--json`) and what a person reads: summary lines and the leaderboard's table."""
    from serving.client import Unknown

    health, page, card = answers["health"], answers["page"], answers["card"]
    regimes, opportunities = answers["regimes"], answers["opportunities"]
    out: dict[str, Any] = {"summary": []}
    lines: list[str] = out["summary"]
    if isinstance(health, Unknown):
        lines.append(f"The service did not answer: {health.reason}")
        return out
    out.update(models=health.models, traders=health.traders, problems=health.problems)
    models = ", ".join(health.models.values()) or "none registered (scores from the skill statistics alone)"
    lines.append(f"Serving {health.traders} traders with {models}")
    if not isinstance(page, Unknown):
        out["top5"] = [r.model_dump() for r in page.rows]
        out["table"] = {
            "title": f"AI leaderboard from the service: top {len(page.rows)} of {page.total} eligible leaders",
            "columns": ["rank", "trader", "score", "p win 7d", "PSR", "DSR", "trades", "archetype", "flags"],
            "rows": [
                [
                    r.rank,
                    r.trader[:12],
                    "–" if r.score is None else f"{r.score:.1f}",
                    _pct(r.p_win_7d),
                    "–" if r.psr is None else f"{r.psr:.2f}",
                    "–" if r.dsr is None else f"{r.dsr:.2f}",
                    r.trades,
                    r.archetype or "–",
                    ", ".join(r.flags) or ("outlier" if r.anomaly else ""),
                ]
                for r in page.rows
            ],
        }
    if card is not None and not isinstance(card, Unknown):
        pnl = "–" if card.stats is None else f"{card.stats.net_pnl_usdc / 1e6:,.2f} USDC"
        flags = "; ".join(f.reason for f in card.flags) or "none"
        lines.append(
            f"Card of {card.trader[:12]}: leaderboard rank {card.rank}, {card.archetype}, PnL over the "
            f"stats window {pnl}, PSR {card.skill.psr:.2f}, {len(card.equity_curve)} equity points; flags: {flags}"
        )
        out["card"] = {"trader": card.trader, "rank": card.rank, "equity_points": len(card.equity_curve)}
    if isinstance(regimes, Unknown):
        lines.append(f"Regimes: unknown ({regimes.reason})")
    else:
        out["regimes"] = {r.pair: r.color for r in regimes}
        lines.append(
            "Regimes: "
            + (
                ", ".join(
                    f"{r.pair} {r.color} ({r.trend}, confidence {_pct(r.confidence)}, as of "
                    f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(r.as_of))} UTC)"
                    for r in regimes
                )
                or "none (no pair has a week of prices)"
            )
        )
    if not isinstance(opportunities, Unknown):
        out["opportunities"] = [o.model_dump() for o in opportunities]
        lines.extend(f"Opportunity: {o.trader[:12]} in {o.pair}: {o.reason}" for o in opportunities)
        if not opportunities:
            lines.append(
                "Opportunities: no eligible, unflagged leader with a 7-day win probability of 50 % or more "
                "in a pair that is not red"
            )
    return out


async def _refresh(services: Services) -> dict[str, Any]:
    """The scheduler's refresh, once: regimes into market_regime_data, analytics into trader_analytics."""
    from data.pairs import load_catalogue
    from serving.jobs import refresh
    from serving.scheduler import JobFailed
    from serving.state import ServingState

    settings = services.settings
    catalogue = load_catalogue(settings.shared_data_dir / "avantis" / "trading_snapshot.json")
    state = ServingState(services.pool, services.redis, catalogue, cache_ttl_s=settings.serving_cache_ttl_s)
    # The refresh logs each model it loads and the population it builds: the summary line says it.
    serving_log = logging.getLogger("vanta.serving")
    level = serving_log.level
    serving_log.setLevel(logging.WARNING)
    try:
        written = dict(await refresh(state, services.pool))
    except JobFailed as exc:
        return {"failed": str(exc)}
    finally:
        serving_log.setLevel(level)
    return written
