"""`vanta stats` and `vanta track`: the tracker run from the command line."""

from __future__ import annotations

import asyncio
import json
import time

import typer

from infra.settings import Settings, get_settings


def _eligibility(settings: Settings):
    from research.stats import Eligibility

    return Eligibility(
        settings.leader_active_hours, settings.leader_min_trades_30d, settings.leader_min_volume_30d_usd
    )


def stats(
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    window_days: int = typer.Option(30, min=1, help="rolling window"),
    limit: int = typer.Option(20, min=1, help="how many candidates"),
    all_traders: bool = typer.Option(False, "--all", help="rank every trader, not only eligible leaders"),
    as_of: int | None = typer.Option(None, help="epoch seconds (default: now)"),
) -> None:
    """Leaderboard candidates ranked by the AI score (the analyzer's latest, from `vanta scheduler`),
    with their stats and skill-versus-luck figures (recomputed from trade_events)."""
    from execution.ai_rank import AI_RANK, latest_ai_scores, with_ai_scores
    from execution.tracker import STATS_COLUMNS, full_recompute
    from infra.runtime import open_services
    from research.stats import closes_frame, leaderboard

    settings = get_settings()
    # Per candidate: the stored stats less bookkeeping, plus the bootstrap p-value.
    candidate_columns = [c for c in STATS_COLUMNS if c not in ("window_days", "as_of")] + [
        "bootstrap_p",
        "ai_score",
    ]

    async def run() -> dict[str, object]:
        when = int(time.time()) if as_of is None else as_of
        async with open_services(settings, with_redis=False) as services:
            tracker = await full_recompute(
                services.pool, as_of=when, window_days=window_days, eligibility=_eligibility(settings)
            )
            async with services.pool.acquire() as conn:
                scores = await latest_ai_scores(conn)
        frame = with_ai_scores(tracker.stats(when), scores)
        top, share = leaderboard(
            frame,
            closes_frame(tracker.closes),
            as_of=when,
            window_days=window_days,
            limit=limit,
            eligible_only=not all_traders,
            rank_by=AI_RANK,
        )
        return {
            "as_of": when,
            "window_days": window_days,
            "traders": frame.height,
            "eligible": int(frame["eligible"].sum()) if frame.height else 0,
            "skill_share": {
                "pi0": share.pi0,
                "skilled": share.skilled,
                "unskilled": share.unskilled,
                "n": share.n,
            },
            "dsr_trials": int(frame["dsr_trials"][0]) if frame.height else 0,
            "candidates": [
                {k: (str(v) if k.endswith("_usdc") else v) for k, v in row.items()}
                for row in top.select(*candidate_columns).iter_rows(named=True)
            ],
        }

    result = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{result['traders']} traders, {result['eligible']} eligible; skilled share ≈ "
        f"{result['skill_share']['skilled']:.1%} (π0 = {result['skill_share']['pi0']:.2f})"
    )
    for col in ("trader", "AI score", "trades", "net PnL (USDC)", "win", "Sharpe", "PSR", "DSR", "boot p"):
        table.add_column(col)
    for c in result["candidates"]:
        table.add_row(
            c["trader"][:12],
            "–" if c["ai_score"] is None else f"{c['ai_score']:.1f}",
            str(c["trades"]),
            f"{int(c['net_pnl_usdc']) / 1e6:,.2f}",
            f"{c['win_rate']:.0%}",
            f"{c['sharpe']:.2f}",
            f"{c['psr']:.2f}",
            f"{c['dsr']:.2f}",
            f"{c['bootstrap_p']:.3f}",
        )
    Console().print(table)


def track(window_days: int = typer.Option(30, min=1)) -> None:
    """Follow the event stream and keep trader_positions / trader_stats current (Ctrl-C stops)."""
    from execution.tracker import Tracker
    from infra.bus import StreamBus
    from infra.metrics import serve_metrics
    from infra.runtime import open_services, stop_on_signals

    settings = get_settings()

    async def run() -> None:
        stop = stop_on_signals()
        serve_metrics(settings.metrics_port)
        async with open_services(settings) as services:
            tracker = Tracker(services.pool, window_days=window_days, eligibility=_eligibility(settings))
            await tracker.load_history()
            assert services.redis is not None
            await tracker.follow(StreamBus(services.redis), stop=stop)

    asyncio.run(run())


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)
    app.command("track")(track)
