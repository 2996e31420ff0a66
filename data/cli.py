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
    from infra.bus import StreamBus
    from infra.runtime import open_services
    from infra.settings import get_settings

    async def run() -> dict[str, int]:
        async with open_services(get_settings()) as services:
            async with services.pool.acquire() as conn:
                report = await ingest_files(conn, paths)
            assert services.redis is not None
            bus = StreamBus(services.redis)
            await bus.publish_many([ev.to_record() for ev in report.new_events])
        for item in report.rejections:
            typer.echo(json.dumps(item), err=True)
        return report.summary()

    typer.echo(json.dumps(asyncio.run(run())))


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest")
