"""Canonical events in PostgreSQL: idempotent inserts and ordered reads of `trade_events`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis

from data.events import TradeEvent
from infra.bus import EVENTS_STREAM, StreamBus

_COLUMNS = (
    "event_id",
    "venue",
    "source",
    "chain_id",
    "tx_hash",
    "log_index",
    "block_number",
    "block_hash",
    "trader",
    "pair_index",
    "pair",
    "kind",
    "position_key",
    "trade_index",
    "open_ts",
    "side",
    "collateral_usdc",
    "leverage",
    "price",
    "size_closed_usdc",
    "open_fee_usdc",
    "close_fee_usdc",
    "rollover_fee_usdc",
    "loss_protection_usdc",
    "usdc_sent",
    "order_id",
    "ts",
    "raw",
)


def _row(ev: TradeEvent) -> tuple[object, ...]:
    return (
        ev.event_id,
        ev.venue,
        ev.source,
        ev.chain_id,
        ev.tx_hash,
        ev.log_index,
        ev.block,
        ev.block_hash,
        ev.trader.lower(),
        ev.pair_index,
        ev.pair,
        ev.kind.value,
        ev.position_key,
        ev.trade_index,
        ev.open_ts,
        ev.side.value if ev.side else None,
        ev.collateral_usdc,
        ev.leverage,
        ev.price,
        ev.size_closed_usdc,
        ev.open_fee_usdc,
        ev.close_fee_usdc,
        ev.rollover_fee_usdc,
        ev.loss_protection_usdc,
        ev.usdc_sent,
        ev.order_id,
        datetime.fromtimestamp(ev.ts, UTC),
        json.dumps(
            {**ev.to_record(), "trader": ev.trader.lower()}
        ),  # addresses are stored lower-case everywhere
    )


async def insert_events(conn: asyncpg.Connection, events: Iterable[TradeEvent]) -> list[TradeEvent]:
    """Insert what is new; return exactly the events that were inserted (repeats are skipped).

    Rows are COPYed into a temporary table and moved with one INSERT ... ON CONFLICT DO NOTHING,
    so a batch of 100,000 events is one statement, and both unique keys (event id; chain id, tx
    hash, log index) reject repeats.
    """
    batch = list({ev.event_id: ev for ev in events}.values())
    if not batch:
        return []
    columns = ", ".join(_COLUMNS)
    async with conn.transaction():
        await conn.execute(
            "CREATE TEMP TABLE _incoming_events (LIKE trade_events INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        await conn.copy_records_to_table(
            "_incoming_events", records=[_row(ev) for ev in batch], columns=list(_COLUMNS)
        )
        rows = await conn.fetch(
            f"INSERT INTO trade_events ({columns}) SELECT {columns} FROM _incoming_events "
            "ON CONFLICT DO NOTHING RETURNING event_id"
        )
    inserted_ids = {r["event_id"] for r in rows}
    return [ev for ev in batch if ev.event_id in inserted_ids]


async def load_events(conn: asyncpg.Connection, *, trader: str | None = None) -> list[TradeEvent]:
    """All events in the order the ledger must see them: by time, opens before closes at a tie."""
    query = "SELECT raw FROM trade_events"
    args: list[object] = []
    if trader is not None:
        query += " WHERE trader = $1"
        args.append(trader.lower())
    query += " ORDER BY ts, (kind <> 'open'), event_id"
    return [TradeEvent.from_record(json.loads(r["raw"])) for r in await conn.fetch(query, *args)]


async def publish_events(
    redis: aioredis.Redis, events: list[TradeEvent], *, batch: int = 5000, stream: str = EVENTS_STREAM
) -> None:
    """Announce newly stored events on the stream, in pipelined batches (the one publishing path)."""
    bus = StreamBus(redis, stream)
    for start in range(0, len(events), batch):
        await bus.publish_many([ev.to_record() for ev in events[start : start + batch]])
