"""`vanta ingest ...`: bring Avantis activity into `trade_events` and onto the event stream."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

ingest_app = typer.Typer(no_args_is_help=True, help="Load trade activity from Veranta's services.")


@ingest_app.command("history")
def history(
    paths: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="history API JSON files"),
) -> None:
    """Closed trades (and the opens they imply), idempotently; new events are published to the stream."""
    from data.sources.veranta_history.ingest import ingest_files
    from data.store import publish_events
    from infra.runtime import open_services
    from infra.settings import get_settings

    async def run() -> dict[str, int]:
        async with open_services(get_settings()) as services:
            async with services.pool.acquire() as conn:
                report = await ingest_files(conn, paths)
            assert services.redis is not None
            await publish_events(services.redis, report.new_events)
        for item in report.rejections:
            typer.echo(json.dumps(item), err=True)
        return report.summary()

    typer.echo(json.dumps(asyncio.run(run())))


@ingest_app.command("events")
def events(
    path: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="canonical events Parquet (e.g. from vanta simulate)"
    ),
    publish: bool = typer.Option(True, help="publish the new events to the Redis stream"),
) -> None:
    """Canonical events from Parquet into trade_events, idempotently; prints {"events", "inserted", "duplicates"}."""
    import polars as pl

    from data.event_frames import events_from_frame
    from data.store import insert_events, publish_events
    from infra.runtime import open_services
    from infra.settings import get_settings

    batch = events_from_frame(pl.read_parquet(path))

    async def run() -> dict[str, int]:
        async with open_services(get_settings(), with_redis=publish) as services:
            async with services.pool.acquire() as conn:
                new = await insert_events(conn, batch)
            if publish and services.redis is not None:
                await publish_events(services.redis, new)
        return {"events": len(batch), "inserted": len(new), "duplicates": len(batch) - len(new)}

    typer.echo(json.dumps(asyncio.run(run())))


def snapshot(
    out: Path = typer.Option(..., help="DuckDB file to write, e.g. data/snapshots/NAME.duckdb"),
) -> None:
    """Copy the event and stats tables from PostgreSQL into a DuckDB file for the notebooks."""
    from data.snapshots import snapshot_postgres
    from infra.runtime import open_services
    from infra.settings import get_settings

    async def run() -> dict[str, int]:
        async with open_services(get_settings(), with_redis=False) as services:
            return await snapshot_postgres(services.pool, out)

    counts = asyncio.run(run())
    typer.echo(json.dumps({"out": str(out), "tables": counts}))


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest")
    app.command("snapshot")(snapshot)
