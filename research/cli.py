"""`vanta pnl ...`: exact PnL from files, no servers needed."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import typer

pnl_app = typer.Typer(no_args_is_help=True, help="Exact PnL: reconcile history files, FIFO from fills.")


@pnl_app.command("reconcile")
def reconcile(
    paths: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="history JSON files"),
) -> None:
    """Check every closed trade's usdcSent and gross against the ledger formula; exit 1 if any fail.
    A file or record that cannot be read is one line on stderr naming it (and counted rejected)."""
    from data.sources.veranta_history.ingest import describe_problem
    from data.sources.veranta_history.records import RecordError, load_file, parse_trade
    from research.reconcile import all_hold, check_trade, summarize

    checks, rejected = [], []
    for path in paths:
        try:
            trader, records = load_file(path)
        except RecordError as exc:
            rejected.append({"file": str(path), "reason": str(exc).removeprefix(f"{path}: ")})
            continue
        for i, rec in enumerate(records):
            try:
                checks.append(check_trade(parse_trade(trader, rec)))
            except RecordError as exc:
                rejected.append({"file": str(path), "trade": i, "reason": str(exc)})
    summary = summarize(checks)
    summary["rejected"] = len(rejected)
    failures = [
        {
            "position": c.trade.position_key,
            "closed_at": c.trade.closed_at,
            "class": c.classification,
            "usdc_sent_exact": c.usdc_sent_exact,
        }
        for c in checks
        if not c.usdc_sent_exact or c.classification == "unexplained"
    ]
    for item in rejected:
        typer.echo(describe_problem(item), err=True)
    for item in failures:
        typer.echo(json.dumps(item), err=True)
    typer.echo(json.dumps(summary))
    if not all_hold(summary) or rejected:
        raise typer.Exit(1)


@pnl_app.command("fifo")
def fifo(
    path: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="CSV: trader,pair,ts,side,qty,price,fee"
    ),
) -> None:
    """FIFO-matched PnL per (trader, pair) as CSV on stdout. realized_pnl is before fees; fees_paid
    is every fee paid, charged once per fill; net = realized_pnl - fees_paid. Each malformed row
    is named by line on stderr and skipped; exit 1 if there was any."""
    from research.fifo import FillError
    from research.fifo_columnar import OUTPUT_COLUMNS, fifo_rows, read_fills_csv

    try:
        fills, errors = read_fills_csv(path)
    except FillError as exc:
        typer.echo(f"vanta: {path}: {exc}", err=True)
        raise typer.Exit(2) from None
    for line, reason in errors:
        typer.echo(f"{path}:{line}: rejected: {reason}", err=True)
    writer = csv.writer(sys.stdout)
    writer.writerow(OUTPUT_COLUMNS)
    writer.writerows(fifo_rows(fills))
    if errors:
        typer.echo(f"{len(errors)} malformed row(s) skipped, {fills.height} counted", err=True)
        raise typer.Exit(1)


def simulate(
    traders: int = typer.Option(1000, min=1, help="population size"),
    days: int = typer.Option(90, min=2, help="simulated days"),
    seed: int = typer.Option(0, help="same seed, same bytes"),
    out: Path = typer.Option(..., help="output folder: events.parquet, truth.parquet"),
    prices: str = typer.Option(
        "", help="folder of real candles, or 'synthetic' (default: the real files when present)"
    ),
    duckdb_path: Path | None = typer.Option(
        None, "--duckdb", help="also write the events and truth to this DuckDB file"
    ),
    workers: int = typer.Option(0, min=0, help="processes (0: one per core)"),
    to_chain: str = typer.Option(
        "", help="deploy the Avantis mock on this anvil node and replay the activity"
    ),
) -> None:
    """Simulate a trader population with planted truth; prints {"traders", "events", "seconds"}."""
    from data.pairs import load_catalogue
    from infra.progress import progress_bar, running_total
    from infra.settings import get_settings
    from research.sim.run import simulate as run_simulation

    settings = get_settings()
    default_prices = settings.shared_data_dir / "prices"
    chosen = prices or (str(default_prices) if default_prices.exists() else "synthetic")
    catalogue = load_catalogue(settings.shared_data_dir / "avantis" / "trading_snapshot.json")
    with progress_bar("simulating traders", traders) as advance:
        sim = run_simulation(
            traders,
            days,
            seed,
            prices=chosen,
            catalogue=catalogue,
            workers=workers or None,
            progress=running_total(advance),
        )
    sim.write(out)
    if duckdb_path is not None:
        from data.snapshots import write_duckdb

        write_duckdb(duckdb_path, {"trade_events": sim.events, "truth": sim.truth})
    summary: dict[str, object] = {
        "traders": traders,
        "events": sim.events.height,
        "seconds": round(sim.seconds, 2),
        "prices": sorted({p.source for p in sim.paths.values()}),
    }
    if to_chain:
        from data.sources.chain.replay import replay_to_node

        with progress_bar("replaying onto the chain", sim.events.height, unit="events") as advance:
            summary["chain"] = replay_to_node(to_chain, sim.events, running_total(advance))
    typer.echo(json.dumps(summary))


def register(app: typer.Typer) -> None:
    app.add_typer(pnl_app, name="pnl")
    app.command("simulate")(simulate)
