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


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"vanta: {message}", err=True)
    raise typer.Exit(code)


def _events_before(as_of: int | None) -> tuple[Any, int]:
    """(events before T, T) from the configured PostgreSQL; T defaults to after the latest event."""
    from infra.runtime import open_services
    from infra.settings import get_settings
    from serving.training import load_event_frame

    async def run() -> Any:
        async with open_services(get_settings(), with_redis=False) as services:
            async with services.pool.acquire() as conn:
                return await load_event_frame(conn, as_of)

    events = asyncio.run(run())
    if as_of is None:
        as_of = int(events["ts"].max()) + 1 if events.height else int(datetime.now(UTC).timestamp())
    return events, as_of


def train(
    as_of: str = typer.Option(
        None, "--as-of", help="ISO 8601 or unix seconds (default: after the latest event)"
    ),
    seed: int = typer.Option(0, help="model seed"),
) -> None:
    """Fit every model on what PostgreSQL holds before T, walk-forward against baselines; register the
    winners in the BentoML store and record every candidate in ai_model_metadata. Prints JSON."""
    from infra.settings import get_settings

    try:
        t = parse_as_of(as_of)
    except InputError as exc:
        _fail(str(exc))
    from infra.runtime import open_services
    from serving.training import train_models

    async def run() -> dict[str, Any]:
        async with open_services(get_settings(), with_redis=False) as services:
            return await train_models(services.pool, services.settings, t, seed=seed)

    summary = asyncio.run(run())
    typer.echo(json.dumps(summary, default=str))


def analyze(
    as_of: str = typer.Option(
        None, "--as-of", help="ISO 8601 or unix seconds (default: after the latest event)"
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON lines, one per trader"),
    limit: int = typer.Option(0, min=0, help="rows to show (0: all)"),
    eligible_only: bool = typer.Option(
        False,
        "--eligible-only",
        help="only leaders passing LEADER_ACTIVE_HOURS, _MIN_TRADES_30D, _MIN_VOLUME_30D_USD",
    ),
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
    settings = get_settings()
    eligible = (
        A.eligible_traders(
            tables.trades,
            t,
            active_hours=settings.leader_active_hours,
            min_trades_30d=settings.leader_min_trades_30d,
            min_volume_30d_usd=settings.leader_min_volume_30d_usd,
        )
        if eligible_only
        else None
    )
    rows = A.score_frame(feats, model.obj if model else None, eligible=eligible)
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
    from serving.training import regime_candles

    candles = regime_candles(events, t, get_settings().shared_data_dir / "prices")
    rows = regime_rows(model.obj, model.tag, candles, t)
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
        executed, failed = report.run_notebooks(run_dir, params, progress=lambda nb: bar.advance(task))
    html = report.render_html(run_dir, executed, failed=failed)
    summary = {
        "run_dir": str(run_dir),
        "report": str(html),
        "notebooks": [p.name for p in executed],
        "failed": dict(failed),
    }
    typer.echo(json.dumps(summary))
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("analyze")(analyze)
    app.command("regime")(regime_cmd)
    app.add_typer(research_app, name="research")
