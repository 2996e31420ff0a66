"""`vanta ingest ...`: bring Avantis activity into `trade_events` and onto the event stream."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer

ingest_app = typer.Typer(no_args_is_help=True, help="Load trade activity from Veranta's services.")


async def _report(services: Any, report: Any) -> None:
    """Publish what an ingest stored, print each rejection to stderr and the summary to stdout."""
    from data.store import publish_events

    assert services.redis is not None
    await publish_events(services.redis, report.new_events)
    for item in report.rejections:
        typer.echo(json.dumps(item), err=True)
    typer.echo(json.dumps(report.summary()))


@ingest_app.command("history")
def history(
    paths: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="history API JSON files"),
) -> None:
    """Closed trades (and the opens they imply), idempotently; new events are published to the stream."""
    from data.sources.veranta_history.ingest import ingest_files
    from infra.runtime import open_services
    from infra.settings import get_settings

    async def run() -> None:
        async with open_services(get_settings()) as services:
            async with services.pool.acquire() as conn:
                await _report(services, await ingest_files(conn, paths))

    asyncio.run(run())


@ingest_app.command("api")
def history_api(
    traders: list[str] = typer.Argument(..., help="trader addresses"),
    history_url: str = typer.Option(None, help="default: veranta-sdk's (VERANTA_HISTORY_API_URL or mainnet)"),
    page_size: int = typer.Option(100, min=1, max=1000),
) -> None:
    """Closed trades from Veranta's history API (veranta-sdk info.trade_history, paged), idempotently;
    prints the same summary as `ingest history`."""
    from veranta_sdk import AsyncVeranta

    from data.sources.veranta_history.api import ingest_traders
    from infra.runtime import open_services
    from infra.settings import get_settings

    async def run() -> None:
        overrides = {"history_api_url": history_url} if history_url else {}
        async with AsyncVeranta(**overrides) as client, open_services(get_settings()) as services:
            async with services.pool.acquire() as conn:
                await _report(services, await ingest_traders(conn, client.info, traders, limit=page_size))

    asyncio.run(run())


@ingest_app.command("stream")
def order_stream(
    traders: list[str] = typer.Argument(..., help="leader addresses to follow"),
    app_key: str = typer.Option(..., envvar="VERANTA_PUSHER_KEY", help="the deployment's Pusher app key"),
    ws_base: str = typer.Option("wss://ws-us2.pusher.com", envvar="VERANTA_PUSHER_WS"),
    history_url: str = typer.Option(None, help="history API for gap fills (default: veranta-sdk's)"),
) -> None:
    """Follow leaders' fills on Veranta's order stream until interrupted; new events are stored
    and published, gaps after a reconnect are filled from the history API."""

    from veranta_sdk import AsyncVeranta

    from data.events import TradeEvent
    from data.sources.veranta_orders.stream import OrderStreamSource, history_gap_fill
    from data.store import insert_events, publish_events
    from infra.runtime import open_services, stop_on_signals
    from infra.settings import get_settings

    async def run() -> None:
        stop = stop_on_signals()
        overrides = {"history_api_url": history_url} if history_url else {}
        async with AsyncVeranta(**overrides) as client, open_services(get_settings()) as services:

            async def emit(events: list[TradeEvent]) -> None:
                async with services.pool.acquire() as conn:
                    new = await insert_events(conn, events)
                assert services.redis is not None
                await publish_events(services.redis, new)

            sources = [
                OrderStreamSource(ws_base, app_key, t, emit, gap_fill=history_gap_fill(client.info))
                for t in traders
            ]
            await asyncio.gather(*(s.run(stop) for s in sources))

    asyncio.run(run())


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


index_app = typer.Typer(no_args_is_help=True, help="Index Avantis logs from a node into trade_events.")


def _indexer_parts(rpc_url: str | None, confirmations: int | None, *, attempts: int | None = None):
    """Settings, the node and the indexer's config. `attempts` bounds each RPC call's retries and
    the wait for a lagging node (one-shot commands); None retries forever (services)."""
    from data.protocol.addresses import WATCHED
    from data.sources.chain.indexer import IndexerConfig
    from data.sources.chain.rpc import ChainRpc
    from infra.settings import get_settings

    settings = get_settings()
    addresses = tuple(a.strip().lower() for a in settings.avantis_addresses.split(",") if a.strip())
    rpc = ChainRpc(rpc_url or settings.base_rpc_url, max_attempts=attempts, backoff_max_s=10.0)
    config = IndexerConfig(
        chain_id=settings.chain_id,
        addresses=addresses or tuple(a.lower() for a in WATCHED),
        confirmation_depth=settings.confirmation_depth if confirmations is None else confirmations,
        initial_range=settings.event_backfill_blocks,
        poll_interval_s=settings.event_monitoring_interval,
        max_behind_s=None if attempts is None else 10.0 * attempts,
    )
    return settings, rpc, config


@index_app.command("backfill")
def index_backfill(
    from_block: int = typer.Option(..., "--from-block", min=0),
    to_block: int = typer.Option(None, "--to-block", help="default: the confirmed head"),
    rpc_url: str = typer.Option(None, help="default: BASE_RPC_URL"),
    confirmations: int = typer.Option(None, help="default: CONFIRMATION_DEPTH"),
    attempts: int = typer.Option(
        8, min=1, help="tries per RPC call before giving up (unreachable node, DNS failure, garbage)"
    ),
) -> None:
    """Index a block range (resumes after the checkpoint when run again); prints the totals.

    Gives up with one line naming the node when it cannot be reached after `--attempts` tries;
    SIGINT/SIGTERM stop it after the current range (exit 130, the totals so far printed)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from data.sources.chain.indexer import Indexer
    from infra.errors import UserFacingError
    from infra.logs import mask_url
    from infra.runtime import open_services, stop_on_signals

    settings, rpc, config = _indexer_parts(rpc_url, confirmations, attempts=attempts)

    async def run() -> dict[str, object]:
        stop = stop_on_signals()
        async with open_services(settings) as services:
            try:
                async with Indexer(rpc, services.pool, services.redis, config) as indexer:
                    last = to_block if to_block is not None else await indexer.safe_head()
                    head = await rpc.head()
                    if last > head:
                        raise UserFacingError(
                            f"--to-block {last} is past the head {head} of the node at {mask_url(rpc.url)}"
                        )
                    columns = (
                        TextColumn("blocks"),
                        BarColumn(),
                        MofNCompleteColumn(),
                        TextColumn("{task.fields[logs]} logs"),
                        TimeRemainingColumn(),
                    )
                    with Progress(*columns, transient=True) as bar:
                        task = bar.add_task("backfill", total=max(last - from_block + 1, 0), logs=0)

                        def show(done: int, total: int, logs: int) -> None:
                            bar.update(task, completed=done, total=total, logs=logs)

                        totals = await indexer.backfill(from_block, last, show, stop=stop)
                    reached = indexer.checkpoint.block if indexer.checkpoint else from_block - 1
                    return {
                        "from_block": from_block,
                        "to_block": last,
                        **totals.as_dict(),
                        **({"interrupted_after_block": reached} if stop.is_set() else {}),
                    }
            finally:
                await rpc.close()

    report = asyncio.run(run())
    typer.echo(json.dumps(report))
    if "interrupted_after_block" in report:
        raise typer.Exit(130)


@index_app.command("tail")
def index_tail(
    rpc_url: str = typer.Option(None, help="default: BASE_RPC_URL"),
    ws_url: str = typer.Option(None, help="default: BASE_WS_URL; 'none' polls only"),
    confirmations: int = typer.Option(None, help="default: CONFIRMATION_DEPTH"),
) -> None:
    """Follow new blocks until interrupted (SIGINT/SIGTERM), resuming from the checkpoint. RPC
    failures, a lagging node and PostgreSQL or Redis restarts are waited out, never fatal."""

    from data.sources.chain.indexer import Indexer
    from infra.runtime import open_services, stop_on_signals

    settings, rpc, config = _indexer_parts(rpc_url, confirmations)
    ws = settings.base_ws_url if ws_url is None else (None if ws_url == "none" else ws_url)

    async def run() -> None:
        stop = stop_on_signals()
        async with open_services(settings) as services:
            try:
                async with Indexer(rpc, services.pool, services.redis, config) as indexer:
                    await indexer.tail(ws, stop)
            finally:
                await rpc.close()

    asyncio.run(run())


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
    app.add_typer(index_app, name="index")
    app.command("snapshot")(snapshot)
