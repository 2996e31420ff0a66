"""`vanta demo` steps of the tracker: simulate a population, load it, rank it, check the ranking
against the truth the simulator planted."""

from __future__ import annotations

import time

import polars as pl
from rich.console import Console

from data.event_frames import events_from_frame
from data.pairs import load_catalogue
from data.sources.veranta_history.ingest import ingest_files
from data.store import insert_events, publish_pending
from execution.tracker import full_recompute
from infra.bus import EVENTS_STREAM
from infra.runtime import Services
from research.plots import skill_vs_luck_chart
from research.sim.run import simulate
from research.stats import Eligibility, closes_frame, leaderboard

console = Console(stderr=True)
DEMO_TRADERS, DEMO_DAYS, DEMO_SEED = 1000, 60, 42


async def real_history(services: Services) -> dict[str, object]:
    """The real closed trades beside the project, when present."""
    folder = services.settings.shared_data_dir / "avantis" / "trades"
    paths = sorted(folder.glob("*.json")) if folder.exists() else []
    if not paths:
        return {"skipped": f"no history files under {folder}"}
    async with services.pool.acquire() as conn:
        report = await ingest_files(conn, paths, stream=EVENTS_STREAM if services.redis else None)
        if services.redis is not None:
            report.published = await publish_pending(conn, services.redis)
    return report.summary()


async def simulated_leaderboard(services: Services) -> dict[str, object]:
    settings = services.settings
    prices_dir = settings.shared_data_dir / "prices"
    catalogue = load_catalogue(settings.shared_data_dir / "avantis" / "trading_snapshot.json")
    started = time.perf_counter()
    sim = simulate(
        DEMO_TRADERS,
        DEMO_DAYS,
        DEMO_SEED,
        prices=prices_dir if prices_dir.exists() else "synthetic",
        catalogue=catalogue,
    )
    console.print(
        f"simulated {DEMO_TRADERS} traders x {DEMO_DAYS} days: {sim.events.height} events "
        f"in {sim.seconds:.1f}s ({', '.join(sorted({p.source for p in sim.paths.values()}))})"
    )
    events = events_from_frame(sim.events)
    async with services.pool.acquire() as conn:
        inserted = await insert_events(conn, events)
    console.print(f"stored {len(inserted)} new events in PostgreSQL")
    as_of = int(sim.events["ts"].max())
    # Simulated traders are smaller than mainnet leaders: rank them all rather than apply the
    # production thresholds (LEADER_MIN_TRADES_30D etc.), and say so in the output.
    tracker = await full_recompute(
        services.pool, as_of=as_of, window_days=DEMO_DAYS, eligibility=Eligibility(72, 0, 0)
    )
    stats = tracker.stats(as_of).filter(pl.col("trader").is_in(sim.truth["trader"].implode()))
    top, share = leaderboard(
        stats,
        closes_frame(tracker.closes),
        as_of=as_of,
        window_days=DEMO_DAYS,
        limit=20,
        eligible_only=False,
        n_boot=500,
    )
    truth = sim.truth.select("trader", "archetype", "edge")
    top = top.join(truth, on="trader", how="left")
    base_rate = float((truth["archetype"] == "skilled").mean())
    hit_rate = float((top["archetype"] == "skilled").mean())
    chart = settings.vanta_home / "demo" / "skill_vs_luck.png"
    chart.parent.mkdir(parents=True, exist_ok=True)
    chart.write_bytes(
        skill_vs_luck_chart(
            stats.join(truth, on="trader"),
            label_column="archetype",
            title=f"{stats.height} simulated traders, {DEMO_DAYS} days",
        )
    )
    return {
        "traders": DEMO_TRADERS,
        "days": DEMO_DAYS,
        "events": sim.events.height,
        "inserted": len(inserted),
        "window_days": DEMO_DAYS,
        "ranked": stats.height,
        "note": "all traders ranked; production eligibility thresholds not applied",
        "skill_share_estimate": round(share.skilled, 4),
        "skilled_share_true": round(base_rate, 4),
        "top20_truly_skilled": round(hit_rate, 2),
        "top20_by_archetype": dict(top.group_by("archetype").len().iter_rows()),
        "top20_significant_bootstrap_p_lt_0_05": int((top["bootstrap_p"] < 0.05).sum()),
        "chart": str(chart),
        "seconds": round(time.perf_counter() - started, 1),
    }
