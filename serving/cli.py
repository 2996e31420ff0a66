"""`vanta train`, `vanta analyze`, `vanta regime`, `vanta research run`: the analyzer's commands that
read PostgreSQL (what is there before the as-of time), call `research/`, and register models.

T (--as-of) is ISO 8601 or unix seconds; by default, one second after the latest stored event.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

research_app = typer.Typer(no_args_is_help=True, help="Research notebooks and reports.")

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


class InputError(ValueError):
    """A user's input the command cannot use: printed as one line, exit 2."""


def parse_as_of(text: str | None) -> int | None:
    """ISO 8601 (a zone-less time is UTC) or unix seconds → epoch seconds."""
    if text is None or text == "":
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--as-of: {text!r} is neither ISO 8601 nor unix seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def _iso(epoch: int | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


async def load_event_frame(conn: Any, before: int | None) -> Any:
    """Canonical events stored before `before` as the research frame (data.event_frames layout)."""
    import polars as pl

    from data.event_frames import EVENT_SCHEMA

    rows = await conn.fetch(EVENTS_SQL, before)
    return pl.DataFrame([tuple(r) for r in rows], schema=EVENT_SCHEMA, orient="row")


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"vanta: {message}", err=True)
    raise typer.Exit(code)


def _events_before(as_of: int | None) -> tuple[Any, int]:
    """(events before T, T) from the configured PostgreSQL; T defaults to after the latest event."""
    from infra.runtime import open_services
    from infra.settings import get_settings

    async def run() -> Any:
        async with open_services(get_settings(), with_redis=False) as services:
            async with services.pool.acquire() as conn:
                return await load_event_frame(conn, as_of)

    events = asyncio.run(run())
    if as_of is None:
        as_of = int(events["ts"].max()) + 1 if events.height else int(datetime.now(UTC).timestamp())
    return events, as_of


def _pair_fees() -> dict[int, tuple[int, int]]:
    from data.pairs import load_catalogue
    from infra.settings import get_settings

    catalogue = load_catalogue(get_settings().shared_data_dir / "avantis" / "trading_snapshot.json")
    return {i: (p.open_fee_ppm, p.close_fee_ppm) for i, p in catalogue.items()}


def regime_candles(events: Any, as_of: int | None) -> dict[str, Any]:
    """Candles for the regime: the real files beside the project when they reach the as-of time
    (any time when none is given), else 15-minute bars from the prices the stored events reveal
    (pairs with a week of them)."""
    from infra.settings import get_settings
    from research import regime
    from research.pipeline import load_candles

    candles = load_candles(get_settings().shared_data_dir / "prices", before=as_of)
    covered = {
        p: c
        for p, c in candles.items()
        if c.height and (as_of is None or int(c["ts"].max()) >= as_of - 3 * 3600)
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


def train(
    as_of: str = typer.Option(
        None, "--as-of", help="ISO 8601 or unix seconds (default: after the latest event)"
    ),
    seed: int = typer.Option(0, help="model seed"),
) -> None:
    """Fit every model on what PostgreSQL holds before T, walk-forward against baselines; register the
    winners in the BentoML store and record every candidate in ai_model_metadata. Prints JSON."""
    from infra.settings import get_settings
    from serving import registry

    try:
        t = parse_as_of(as_of)
    except InputError as exc:
        _fail(str(exc))
    settings = get_settings()
    registry.configure(settings.vanta_home)
    from data.snapshots import write_duckdb
    from research import forecast, pipeline, regime

    events, t = _events_before(t)
    snapshot = settings.vanta_home / "snapshots" / f"train-{t}.duckdb"
    write_duckdb(snapshot, {"trade_events": events})
    summary: dict[str, Any] = {"as_of": _iso(t), "events": events.height, "snapshot": str(snapshot)}
    records: list[dict[str, Any]] = []

    try:
        out = pipeline.train_analyzer(events, t, seed=seed, fee_ppm=_pair_fees())
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

    candles = regime_candles(events, t)
    try:
        rg = pipeline.train_regime(candles, seed=seed)
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
                baseline_metrics={p: h["vol_quantiles"] for p, h in rg.holdout.items()},
                beats_baseline=rg.beats_baseline,
            )
        )

    if records:
        from infra.runtime import open_services

        async def write() -> None:
            async with open_services(settings, with_redis=False) as services:
                async with services.pool.acquire() as conn:
                    for r in records:
                        await registry.record(conn, **r)

        asyncio.run(write())
    typer.echo(json.dumps(summary, default=str))


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
        "object": "research.regime.RegimeModel",
        "input": "research.regime.hourly_observations(15-minute candles: ts, close)",
        "outputs": ["color", "confidence", "trend", "signal", "p_green", "p_yellow", "p_red"],
        "colors": list(R.COLORS),
        "state_colors": rg.model.state_colors,
        "pairs_trained": pairs,
        "train_start": rg.model.train_start,
        "train_end": rg.model.train_end,
        "holdout_start": rg.split_ts,
        "verdict": rg.verdict,
        "metrics": rg.metrics(),
    }


def analyze(
    as_of: str = typer.Option(
        None, "--as-of", help="ISO 8601 or unix seconds (default: after the latest event)"
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON lines, one per trader"),
    limit: int = typer.Option(0, min=0, help="rows to show (0: all)"),
) -> None:
    """One row per trader: rank, copyability score, 7-day forecast, anomaly flags, archetype, PSR/DSR."""
    from infra.settings import get_settings
    from serving import registry

    try:
        t = parse_as_of(as_of)
    except InputError as exc:
        _fail(str(exc))
    registry.configure(get_settings().vanta_home)
    from research import analyzer as A
    from research.pipeline import ANALYZER_MODEL, Tables

    events, t = _events_before(t)
    tables = Tables.from_events(events)
    feats = tables.features_at(t)
    model = registry.load_latest(ANALYZER_MODEL)
    rows = A.score_frame(feats, model.obj if model else None)
    if limit:
        rows = rows.head(limit)
    note = (
        f"scores from {model.tag}"
        if model
        else "no analyzer registered (run vanta train): score = 100 x PSR from the skill statistics alone; "
        "p_win_7d and expected_pnl_7d_usdc are null"
    )
    if as_json:
        typer.echo(note, err=True)
        for rec in A.json_rows(rows):
            rec.pop("score_source", None)
            sys.stdout.write(json.dumps(rec) + "\n")
        return
    _print_table(rows, t, note)


def _print_table(rows: Any, as_of: int, note: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from research import analyzer as A

    table = Table(title=f"Traders as of {_iso(as_of)}", caption=note)
    for col in (
        "rank",
        "trader",
        "score",
        "p_win_7d",
        "exp. PnL 7d",
        "flags",
        "archetype",
        "PSR",
        "DSR",
        "trades",
    ):
        table.add_column(col, justify="left" if col in ("trader", "flags", "archetype") else "right")

    def f(v: Any, digits: int = 2) -> str:
        return "–" if v is None else f"{v:.{digits}f}"

    for r in A.json_rows(rows):
        table.add_row(
            str(r["rank"]),
            str(r["trader"]),
            f(r["score"], 1),
            f(r["p_win_7d"]),
            f(r["expected_pnl_7d_usdc"], 1),
            ", ".join(r["flags"] or []) or ("anomalous" if r["anomaly"] else ""),  # type: ignore[arg-type]
            str(r["archetype"]),
            f(r["psr"]),
            f(r["dsr"]),
            str(r["trades"]),
        )
    Console().print(table)


def regime_cmd(
    pair: str = typer.Option(None, "--pair", help="e.g. BTC/USD (default: every pair with prices)"),
    as_of: str = typer.Option(None, "--as-of", help="ISO 8601 or unix seconds (default: the latest prices)"),
    as_json: bool = typer.Option(False, "--json", help="JSON lines, one per pair"),
) -> None:
    """The market regime per pair from the registered regime model: color, volatility, trend, confidence."""
    from infra.settings import get_settings
    from serving import registry

    try:
        t = parse_as_of(as_of)
    except InputError as exc:
        _fail(str(exc))
    registry.configure(get_settings().vanta_home)
    from research.pipeline import REGIME_MODEL

    model = registry.load_latest(REGIME_MODEL)
    if model is None:
        _fail("no regime model registered: run `vanta train` first", 1)
    events, _ = _events_before(t)
    rows = regime_rows(model.obj, model.tag, regime_candles(events, t), t)
    if pair is not None:
        rows = [r for r in rows if r["pair"] == pair]
        if not rows:
            _fail(f"--pair: no prices for {pair!r} before the as-of time", 1)
    if not rows:
        _fail("no prices before the as-of time for any pair", 1)
    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps(r) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Market regime")
    for col in ("pair", "color", "volatility_1h", "trend", "confidence", "as_of", "model"):
        table.add_column(col)
    for r in rows:
        style = {"green": "green", "yellow": "yellow", "red": "red"}[r["color"]]
        table.add_row(
            r["pair"],
            f"[{style}]{r['color']}[/{style}]",
            f"{r['volatility_1h']:.1%}",
            r["trend"],
            f"{r['confidence']:.2f}",
            r["as_of"],
            r["model"],
        )
    Console().print(table)


def regime_rows(model: Any, tag: str, candles: dict[str, Any], as_of: int | None) -> list[dict[str, Any]]:
    """The latest classified hour at or before `as_of` for each pair, in the CLI's JSON shape."""
    import polars as pl

    from research import regime as R

    out = []
    for pair, c in sorted(candles.items()):
        obs = R.hourly_observations(c)
        if as_of is not None:
            obs = obs.filter(pl.col("ts") <= as_of)
        if obs.is_empty():
            continue
        last = model.classify(obs).row(-1, named=True)
        out.append(
            {
                "pair": pair,
                "color": last["color"],
                "volatility_1h": round(float(last["vol_1h"]), 6),
                "trend": last["trend"],
                "confidence": round(float(last["confidence"]), 6),
                "as_of": _iso(int(last["ts"])),
                "model": tag,
            }
        )
    return out


@research_app.command("run")
def research_run(
    snapshot: Path = typer.Option(None, help="DuckDB snapshot (default: export PostgreSQL before T)"),
    as_of: str = typer.Option(
        None, "--as-of", help="ISO 8601 or unix seconds (default: after the latest event)"
    ),
    seed: int = typer.Option(0),
    name: str = typer.Option("", help="run folder name (default: the current UTC time)"),
) -> None:
    """Execute the notebooks with papermill into VANTA_HOME/reports/RUN/ and render report.html."""
    from rich.progress import Progress

    from infra.settings import get_settings
    from research import report

    settings = get_settings()
    try:
        t = parse_as_of(as_of)
    except InputError as exc:
        _fail(str(exc))
    if snapshot is not None and not snapshot.exists():
        _fail(f"--snapshot: {snapshot} does not exist")
    if snapshot is None:
        from data.snapshots import write_duckdb

        events, t = _events_before(t)
        snapshot = settings.vanta_home / "snapshots" / f"research-{t}.duckdb"
        write_duckdb(snapshot, {"trade_events": events})
    run = name or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = settings.vanta_home / "reports" / run
    params = {
        "snapshot": str(snapshot.resolve()),
        "as_of": t,
        "horizon_days": 7,
        "seed": seed,
        "prices_dir": str((settings.shared_data_dir / "prices").resolve()),
    }
    with Progress() as bar:
        task = bar.add_task("notebooks", total=len(report.NOTEBOOKS))
        executed = report.run_notebooks(run_dir, params, progress=lambda nb: bar.advance(task))
    html = report.render_html(run_dir, executed)
    typer.echo(
        json.dumps({"run_dir": str(run_dir), "report": str(html), "notebooks": [p.name for p in executed]})
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("analyze")(analyze)
    app.command("regime")(regime_cmd)
    app.add_typer(research_app, name="research")
