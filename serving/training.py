"""Training from PostgreSQL: what `vanta train` and the demo run. Reads the events stored before
T, exports them as a DuckDB snapshot (the notebooks' input), calls `research.pipeline`, registers
the winners in BentoML's store and records every candidate in `ai_model_metadata`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving import registry

EVENTS_SQL = """
SELECT event_id, venue, source, trader, pair_index, pair, kind, trade_index, open_ts,
       extract(epoch FROM ts)::bigint AS ts, side, collateral_usdc,
       round(leverage * 10000000000)::bigint AS leverage_e10, round(price * 10000000000)::bigint AS price_e10,
       size_closed_usdc, open_fee_usdc, close_fee_usdc, rollover_fee_usdc, loss_protection_usdc, usdc_sent,
       NULL::bigint AS gross_pnl_usdc,
       round(nullif(raw->>'tp', '')::numeric * 10000000000)::bigint AS tp_e10,
       round(nullif(raw->>'sl', '')::numeric * 10000000000)::bigint AS sl_e10
FROM trade_events WHERE ($1::bigint IS NULL OR ts < to_timestamp($1::bigint))
ORDER BY ts, (kind <> 'open'), event_id
"""


async def load_event_frame(conn: Any, before: int | None) -> Any:
    """Canonical events stored before `before` as the research frame (data.event_frames layout)."""
    import polars as pl

    from data.event_frames import EVENT_SCHEMA

    rows = await conn.fetch(EVENTS_SQL, before)
    return pl.DataFrame([tuple(r) for r in rows], schema=EVENT_SCHEMA, orient="row")


def pair_fees(settings: Any) -> dict[int, tuple[int, int]]:
    from data.pairs import load_catalogue

    catalogue = load_catalogue(settings.shared_data_dir / "avantis" / "trading_snapshot.json")
    return {i: (p.open_fee_ppm, p.close_fee_ppm) for i, p in catalogue.items()}


def regime_candles(
    events: Any, as_of: int | None, prices_dir: Path, *, recent: bool = True, last_days: int = 0
) -> dict[str, Any]:
    """Candles for the regime: the real files beside the project when they reach the as-of time
    (any time when none is given; with `recent` False, any history before it: training), else
    15-minute bars from the prices the stored events reveal (pairs with a week of them)."""
    from research import regime
    from research.pipeline import load_candles

    candles = load_candles(prices_dir, before=as_of, last_days=last_days)
    covered = {
        p: c
        for p, c in candles.items()
        if c.height and (as_of is None or not recent or int(c["ts"].max()) >= as_of - 3 * 3600)
    }
    if covered:
        return covered
    out = {}
    if events is not None and events.height:
        for (index, pair), _ in events.filter(events["pair"].is_not_null()).group_by(["pair_index", "pair"]):
            bars = regime.bars_from_events(events, int(index))
            if bars.height >= 7 * 96:
                out[str(pair)] = bars
    return out


async def train_models(pool: Any, settings: Any, as_of: int | None, *, seed: int = 0) -> dict[str, Any]:
    """Fit, judge and register every model on the events stored before `as_of` (default: after the
    latest). Returns the JSON summary `vanta train` prints."""
    registry.configure(settings.vanta_home)
    from data.snapshots import write_duckdb
    from research import forecast, pipeline, regime

    async with pool.acquire() as conn:
        events = await load_event_frame(conn, as_of)
    t = (
        as_of
        if as_of is not None
        else (int(events["ts"].max()) + 1 if events.height else int(datetime.now(UTC).timestamp()))
    )
    snapshot = (settings.vanta_home / "snapshots" / f"train-{t}.duckdb").resolve()
    write_duckdb(snapshot, {"trade_events": events})
    summary: dict[str, Any] = {"as_of": _iso(t), "events": events.height, "snapshot": str(snapshot)}
    records: list[dict[str, Any]] = []

    try:
        out = await asyncio.to_thread(
            pipeline.train_analyzer, events, t, seed=seed, fee_ppm=pair_fees(settings)
        )
    except forecast.HistoryTooShort as exc:
        summary["analyzer"] = {"status": "history_too_short", "reason": str(exc), "registered": None}
    else:
        metrics = out.metrics()
        entry: dict[str, Any] = {
            "beats_baseline": out.beats_baseline,
            "verdict": out.verdict,
            "walk_forward_folds": out.walk_forward.folds if out.walk_forward else 0,
            "panel_rows": out.panel_rows,
            "copy_auc": metrics.get("copy_auc", {}).get("p_copy_win"),
            "win_auc": metrics.get("win_auc", {}).get("p_win_7d"),
            "pnl_spearman": metrics.get("pnl_spearman", {}).get("expected_pnl_7d_usdc"),
            "copy_backtest_top10": metrics.get("copy_backtest_top10"),
        }
        tag = None
        if out.beats_baseline and out.analyzer is not None:
            tag = registry.save(
                pipeline.ANALYZER_MODEL,
                out.analyzer,
                analyzer_metadata(out, t),
            )
            entry["status"] = "registered"
        else:
            previous = registry.load_latest(pipeline.ANALYZER_MODEL)
            entry["status"] = "not_registered"
            entry["kept"] = previous.tag if previous else None
        entry["registered"] = tag
        summary["analyzer"] = entry
        records.append(
            dict(
                name=pipeline.ANALYZER_MODEL,
                version=tag.split(":")[1] if tag else f"candidate-{t}",
                bento_tag=tag,
                train_start=out.analyzer.train_start if out.analyzer else None,
                train_end=t,
                metrics={k: v for k, v in metrics.items() if k != "copy_backtest_top10"},
                baseline_metrics={
                    "copy_backtest_top10": metrics.get("copy_backtest_top10"),
                    "verdict": out.verdict,
                },
                beats_baseline=out.beats_baseline,
            )
        )

    candles = regime_candles(
        events, t, settings.shared_data_dir / "prices", recent=False, last_days=settings.regime_train_days
    )
    try:
        rg = await asyncio.to_thread(pipeline.train_regime, candles, seed=seed)
    except regime.RegimeError as exc:
        summary["regime"] = {"status": "history_too_short", "reason": str(exc), "registered": None}
    else:
        tag = None
        if rg.beats_baseline and rg.model is not None:
            tag = registry.save(pipeline.REGIME_MODEL, rg.model, regime_metadata(rg, sorted(candles)))
        previous = None if tag else registry.load_latest(pipeline.REGIME_MODEL)
        summary["regime"] = {
            "status": "registered" if tag else "not_registered",
            "beats_baseline": rg.beats_baseline,
            "verdict": rg.verdict,
            "registered": tag,
            "kept": previous.tag if previous else None,
            "pairs": sorted(candles),
        }
        records.append(
            dict(
                name=pipeline.REGIME_MODEL,
                version=tag.split(":")[1] if tag else f"candidate-{t}",
                bento_tag=tag,
                train_start=rg.model.train_start if rg.model else None,
                train_end=rg.split_ts,
                metrics=rg.metrics(),
                baseline_metrics=rg.baseline_metrics(),
                beats_baseline=rg.beats_baseline,
            )
        )

    async with pool.acquire() as conn:
        for r in records:
            await registry.record(conn, **r)
    return summary


def _iso(epoch: int | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def analyzer_metadata(out: Any, as_of: int) -> dict[str, Any]:
    """What the serving layer needs to use the analyzer, and what it was judged on."""
    from research import analyzer as A
    from research import features as F

    metrics = out.metrics()
    return {
        "kind": "analyzer",
        "object": "research.analyzer.Analyzer",
        "input": "research.features.trader_features(trades, as_of, positions=, prices=) frame",
        "features": list(F.FEATURES),
        "outputs": list(A.ROW_COLUMNS),
        "score": "100 x calibrated P(next-week fixed-collateral copy ends ahead); flagged traders rank last",
        "horizon_days": 7,
        "lookback_days": F.LOOKBACK_DAYS,
        "train_start": out.analyzer.train_start,
        "train_end": out.analyzer.train_end,
        "as_of": as_of,
        "verdict": out.verdict,
        "metrics": {k: v for k, v in metrics.items() if k != "copy_backtest_top10"},
        "copy_backtest_top10": metrics.get("copy_backtest_top10"),
    }


def regime_metadata(rg: Any, pairs: list[str]) -> dict[str, Any]:
    from research import regime as R

    return {
        "kind": "regime",
        "object": f"{type(rg.model).__module__}.{type(rg.model).__qualname__}",
        "family": rg.chosen,
        "input": "research.regime.hourly_observations(15-minute candles: ts, close)",
        "outputs": ["color", "confidence", "trend", "signal", "p_green", "p_yellow", "p_red"],
        "colors": list(R.COLORS),
        "parameters": rg.model.describe(),
        "pairs_trained": pairs,
        "train_start": rg.model.train_start,
        "train_end": rg.model.train_end,
        "validation_start": rg.validation_ts,
        "holdout_start": rg.split_ts,
        "verdict": rg.verdict,
        "metrics": rg.metrics(),
    }
