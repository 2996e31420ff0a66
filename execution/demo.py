"""`vanta demo` steps of the tracker: load the real closed trades, simulate a population, rank
it, check the ranking against the truth the simulator planted.

Each step returns its figures (the demo's `--json`) plus `summary`: the few lines a person reads,
and optionally `table` ({"title", "columns", "rows"}) for the demo command to draw.
"""

from __future__ import annotations

import logging
import time

import polars as pl

from data.event_frames import events_from_frame
from data.pairs import load_catalogue
from data.sources.veranta_history.ingest import ingest_files
from data.store import publish_pending, store_events
from execution.tracker import window_stats
from infra.bus import EVENTS_STREAM
from infra.progress import progress_bar, running_total
from infra.runtime import Services
from research.sim.run import simulate
from research.stats import Eligibility, leaderboard

DEMO_TRADERS, DEMO_DAYS, DEMO_SEED = 1000, 60, 42
STORE_BATCH = 25_000


async def real_history(services: Services) -> dict[str, object]:
    """The real closed trades beside the project, when present."""
    folder = services.settings.shared_data_dir / "avantis" / "trades"
    paths = sorted(folder.glob("*.json")) if folder.exists() else []
    if not paths:
        reason = f"no history files under {folder}"
        return {"skipped": reason, "summary": [f"Real closed trades: skipped ({reason})"]}
    async with services.pool.acquire() as conn:
        with progress_bar("loading real closed trades", len(paths), unit="files") as advance:
            report = await ingest_files(
                conn, paths, stream=EVENTS_STREAM if services.redis else None, progress=advance
            )
        if services.redis is not None:
            report.published = await publish_pending(conn, services.redis)
    s = report.summary()
    line = (
        f"Real closed trades: {s['trades']:,} from {s['files']} files; {s['inserted']:,} new, "
        f"{s['duplicates']:,} already stored"
    )
    if s["rejected"] or s["conflicts"]:
        line += f", {s['rejected']} rejected, {s['conflicts']} in conflict"
    return {**s, "summary": [line]}


async def simulated_leaderboard(services: Services) -> dict[str, object]:
    settings = services.settings
    prices_dir = settings.shared_data_dir / "prices"
    catalogue = load_catalogue(settings.shared_data_dir / "avantis" / "trading_snapshot.json")
    started = time.perf_counter()
    with progress_bar(f"simulating {DEMO_TRADERS:,} traders x {DEMO_DAYS} days", DEMO_TRADERS) as advance:
        sim = simulate(
            DEMO_TRADERS,
            DEMO_DAYS,
            DEMO_SEED,
            prices=prices_dir if prices_dir.exists() else "synthetic",
            catalogue=catalogue,
            progress=running_total(advance),
        )
    prices = sorted({p.source.split(":")[0] for p in sim.paths.values()})
    events = events_from_frame(sim.events)
    inserted = 0
    # Simulated activity is stored, not published: no engine should copy an invented trade.
    with progress_bar("storing events in PostgreSQL", len(events), unit="events") as advance:
        async with services.pool.acquire() as conn:
            for start in range(0, len(events), STORE_BATCH):
                batch = events[start : start + STORE_BATCH]
                inserted += (await store_events(conn, batch, stream=None)).inserted
                advance(len(batch))
    as_of = int(sim.events["ts"].max())
    # Simulated traders are smaller than mainnet leaders: rank them all rather than apply the
    # production thresholds (LEADER_MIN_TRADES_30D etc.), and say so in the output.
    with progress_bar("ranking and bootstrapping", None):
        computed = await window_stats(
            services.pool, window_days=DEMO_DAYS, as_of=as_of, eligibility=Eligibility(72, 0, 0)
        )
        stats = computed.stats.filter(pl.col("trader").is_in(sim.truth["trader"].implode()))
        top, share = leaderboard(
            stats,
            computed.closes,
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
    chart = (settings.vanta_home / "demo" / "skill_vs_luck.png").resolve()
    chart.parent.mkdir(parents=True, exist_ok=True)
    with progress_bar("drawing the chart", None):
        # Matplotlib warns that it builds its font cache on a first run; the bar says enough.
        logging.getLogger("matplotlib").setLevel(logging.ERROR)
        from research.plots import skill_vs_luck_chart

        chart.write_bytes(
            skill_vs_luck_chart(
                stats.join(truth, on="trader"),
                label_column="archetype",
                title=f"{stats.height} simulated traders, {DEMO_DAYS} days",
            )
        )
    by_archetype = dict(top.group_by("archetype").len().sort("len", descending=True).iter_rows())
    significant = int((top["bootstrap_p"] < 0.05).sum())
    seconds = round(time.perf_counter() - started, 1)
    return {
        "traders": DEMO_TRADERS,
        "days": DEMO_DAYS,
        "events": sim.events.height,
        "inserted": inserted,
        "window_days": DEMO_DAYS,
        "ranked": stats.height,
        "note": "all traders ranked; production eligibility thresholds not applied",
        "skill_share_estimate": round(share.skilled, 4),
        "skilled_share_true": round(base_rate, 4),
        "top20_truly_skilled": round(hit_rate, 2),
        "top20_by_archetype": by_archetype,
        "top20_significant_bootstrap_p_lt_0_05": significant,
        "chart": str(chart),
        "seconds": seconds,
        "summary": [
            f"Simulated {DEMO_TRADERS:,} traders x {DEMO_DAYS} days on {' and '.join(prices)} prices: "
            f"{sim.events.height:,} events ({inserted:,} new in PostgreSQL) in {seconds:.0f} s",
            f"Ranked {stats.height:,} traders by deflated Sharpe (all of them: production thresholds "
            "not applied to simulated traders)",
            f"Skilled share: estimated {share.skilled:.1%}, planted {base_rate:.1%}; the top 20 hold "
            f"{hit_rate:.0%} truly skilled, {significant} with a bootstrap p < 0.05",
            f"Chart: {chart}",
        ],
        "table": {
            "title": "Top 20 by DSR, by what the simulator planted",
            "columns": ["archetype", "traders"],
            "rows": [[str(k), str(v)] for k, v in by_archetype.items()],
        },
    }
