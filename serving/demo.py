"""`vanta demo` step: train the analyzer and the regime on the simulated population the previous
step stored, show the top of the AI leaderboard, and write the research report."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from infra.runtime import Services

console = Console(stderr=True)


async def train_and_analyze(services: Services) -> dict[str, Any]:
    from research import analyzer as A
    from research import report
    from research.pipeline import ANALYZER_MODEL, Tables, load_snapshot
    from serving import registry
    from serving.training import train_models

    started = time.perf_counter()
    async with services.pool.acquire() as conn:
        last = await conn.fetchval(
            "SELECT extract(epoch FROM max(ts))::bigint FROM trade_events WHERE source = 'simulator'"
        )
    if last is None:
        return {"skipped": "no simulated events stored (the simulated leaderboard step did not run)"}
    as_of = int(last) + 1
    console.print("training the analyzer and the regime (walk-forward against baselines) ...")
    summary = await train_models(services.pool, services.settings, as_of)
    console.print(f"analyzer: {summary['analyzer'].get('status')}; regime: {summary['regime'].get('status')}")

    events, _ = load_snapshot(Path(summary["snapshot"]))
    feats = Tables.from_events(events).features_at(as_of)
    model = registry.load_latest(ANALYZER_MODEL)
    rows = A.score_frame(feats, model.obj if model else None)
    top = A.json_rows(rows.head(10))

    run_dir = services.settings.vanta_home / "reports" / f"demo-{as_of}"
    params = {
        "snapshot": str(summary["snapshot"]),
        "as_of": as_of,
        "horizon_days": 7,
        "seed": 0,
        "prices_dir": str((services.settings.shared_data_dir / "prices").resolve()),
        "label": "demo population",
    }
    console.print(f"research report: executing {len(report.NOTEBOOKS)} notebooks into {run_dir} ...")
    executed, failed = await asyncio.to_thread(
        report.run_notebooks, run_dir, params, progress=lambda nb: console.print(f"  notebook {nb} done")
    )
    html = report.render_html(run_dir, executed, failed=failed, title="Vanta research report (demo)")
    return {
        "train": summary,
        "scored_by": model.tag if model else "skill statistics only (no analyzer registered)",
        "top10": [
            {k: r[k] for k in ("rank", "trader", "score", "p_win_7d", "flags", "archetype", "psr", "trades")}
            for r in top
        ],
        "report": str(html),
        "notebooks_failed": dict(failed),
        "seconds": round(time.perf_counter() - started, 1),
    }
