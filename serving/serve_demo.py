"""`vanta demo` step: the BentoML service on the demo's population and the models the training
step registered; a few answers through the typed client, then the scheduler's refresh (regimes and
trader analytics written to PostgreSQL). The service is stopped at the end of the step."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from infra.runtime import Services

console = Console(stderr=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve_and_ask(services: Services) -> dict[str, Any]:
    from serving import registry
    from serving.client import ServingClient, Unknown
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
    log_path = settings.vanta_home / "logs" / "serve-demo.log"
    service = ServiceProcess(_free_port(), env, log_path)
    console.print(f"starting the BentoML service on {service.url} (log: {log_path}) ...")
    summary: dict[str, Any] = {"url": service.url, "log": str(log_path)}
    try:
        service.start()
        summary["cold_start_s"] = round(await service.wait_ready(), 1)
        async with ServingClient(service.url, timeout_s=30) as client:
            health = await client.health()
            page = await client.leaderboard(page_size=5)
            regimes = await client.regime()
            opportunities = await client.opportunities(limit=5)
            card = None
            if not isinstance(page, Unknown) and page.rows:
                card = await client.trader(page.rows[0].trader)
            started = time.perf_counter()
            for row in page.rows if not isinstance(page, Unknown) else []:
                await client.trader(row.trader)
            summary["cards_ms_each"] = round(
                (time.perf_counter() - started) * 1000 / max(1, len(getattr(page, "rows", []))), 1
            )
        summary.update(_show(health, page, card, regimes, opportunities))
        summary["refresh"] = await _refresh(services)
    finally:
        service.stop()
    return summary


def _show(health: Any, page: Any, card: Any, regimes: Any, opportunities: Any) -> dict[str, Any]:
    from serving.client import Unknown

    out: dict[str, Any] = {}
    if isinstance(health, Unknown):
        out["health"] = f"unknown: {health.reason}"
        return out
    out["models"] = health.models or "none registered: scores from the skill statistics alone"
    out["traders"] = health.traders
    out["problems"] = health.problems
    console.print(
        f"serving {health.traders} traders; models: {health.models or 'none (skill statistics only)'}"
    )
    if not isinstance(page, Unknown):
        table = Table(title=f"AI leaderboard, top {len(page.rows)} of {page.total} eligible")
        for col in ("rank", "trader", "score", "p win 7d", "PSR", "DSR", "trades", "archetype", "flagged"):
            table.add_column(col)
        for r in page.rows:
            table.add_row(
                str(r.rank),
                r.trader[:12],
                "–" if r.score is None else f"{r.score:.1f}",
                "–" if r.p_win_7d is None else f"{r.p_win_7d:.0%}",
                "–" if r.psr is None else f"{r.psr:.2f}",
                "–" if r.dsr is None else f"{r.dsr:.2f}",
                str(r.trades),
                r.archetype or "–",
                "yes" if r.flagged else "",
            )
        console.print(table)
        out["top5"] = [r.model_dump() for r in page.rows]
    if card is not None and not isinstance(card, Unknown):
        pnl = card.stats.net_pnl_usdc / 1e6 if card.stats else None
        console.print(
            f"card of {card.trader[:12]}: rank {card.rank}, archetype {card.archetype}, "
            f"{len(card.equity_curve)} equity points, window PnL {pnl if pnl is None else f'{pnl:,.2f} USDC'}, "
            f"flags: {', '.join(f.reason for f in card.flags) or 'none'}"
        )
        out["card"] = {"trader": card.trader, "rank": card.rank, "equity_points": len(card.equity_curve)}
    if not isinstance(regimes, Unknown):
        for r in regimes:
            console.print(
                f"regime {r.pair}: {r.color} ({r.trend}, confidence {r.confidence:.0%}, 1 h volatility "
                f"{(r.volatility_1h or 0):.0%}) as of {time.strftime('%Y-%m-%d %H:%M', time.gmtime(r.as_of))} UTC"
            )
        out["regimes"] = {r.pair: r.color for r in regimes}
    else:
        out["regimes"] = f"unknown: {regimes.reason}"
    if not isinstance(opportunities, Unknown):
        for o in opportunities:
            console.print(f"opportunity: {o.trader[:12]} in {o.pair}: {o.reason}")
        out["opportunities"] = len(opportunities)
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
    try:
        written = dict(await refresh(state, services.pool))
    except JobFailed as exc:
        return {"failed": str(exc)}
    console.print(
        f"refresh: {written['traders']} trader analytics and {written['regime_rows']} regime rows written"
    )
    return written
