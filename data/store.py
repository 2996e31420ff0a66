"""Canonical events in PostgreSQL: idempotent inserts, the outbox that gets every stored event onto
the stream, and ordered reads of `trade_events`.

Two ways in. `store_events` (the ingest commands) writes events and their `event_outbox` rows in
the caller's transaction and tells new events from repeats and from conflicts (same id, other
values); `publish_pending` then puts the outbox on the stream in event order and deletes each
row only after Redis has its message, so a crash anywhere leaves nothing stored-but-unpublished
for good: the next sweep (every ingest command starts and ends with one) publishes it.
`insert_events` + `publish_events` is the indexer's pair: it publishes inside its own transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from data.events import EventKind, TradeEvent
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
_FIELDS = tuple(TradeEvent.__dataclass_fields__)

# Publishing order within one second: an open before anything that changes or closes it, a
# partial close before the close that finishes the position.
KIND_RANK: dict[str, int] = {
    EventKind.OPEN: 0,
    EventKind.MARGIN_UPDATE: 1,
    EventKind.TP_SL_UPDATE: 1,
    EventKind.CANCEL: 1,
    EventKind.PARTIAL_CLOSE: 2,
    EventKind.CLOSE: 3,
    EventKind.TP: 3,
    EventKind.SL: 3,
    EventKind.LIQUIDATION: 3,
}
_RANK_SQL = "CASE kind " + " ".join(f"WHEN '{k}' THEN {r}" for k, r in KIND_RANK.items()) + " ELSE 4 END"


def event_order(ev: TradeEvent) -> tuple[int, int, str]:
    """The order consumers must see events in: by time, opens before their closes."""
    return ev.ts, KIND_RANK.get(ev.kind, 4), ev.event_id


def event_record(ev: TradeEvent) -> dict[str, Any]:
    """`TradeEvent.to_record()` without the empty fields (`from_record` restores them as None):
    the `raw` column and the stream payload, a third smaller for API events, built without
    `dataclasses.asdict`'s deep copy (this runs for every event stored)."""
    out: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(ev, name)
        if value is None:
            continue
        if isinstance(value, StrEnum):
            value = value.value
        elif isinstance(value, Decimal):
            value = str(value)
        out[name] = value
    out["trader"] = ev.trader.lower()  # addresses are stored lower-case everywhere
    return out


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
        json.dumps(event_record(ev), separators=(",", ":")),
    )


async def prepare_incoming(conn: asyncpg.Connection) -> None:
    """An empty `_incoming_events` (trade_events' columns) for this transaction's next batch."""
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS _incoming_events (LIKE trade_events INCLUDING DEFAULTS) "
        "ON COMMIT DROP; TRUNCATE _incoming_events"
    )


async def _copy_incoming(conn: asyncpg.Connection, batch: Sequence[TradeEvent]) -> None:
    await prepare_incoming(conn)
    await conn.copy_records_to_table(
        "_incoming_events", records=[_row(ev) for ev in batch], columns=list(_COLUMNS)
    )


def _unique(events: Iterable[TradeEvent]) -> list[TradeEvent]:
    return list({ev.event_id: ev for ev in events}.values())


async def insert_events(conn: asyncpg.Connection, events: Iterable[TradeEvent]) -> list[TradeEvent]:
    """Insert what is new; return exactly the events that were inserted (repeats are skipped).

    Rows are COPYed into a temporary table and moved with one INSERT ... ON CONFLICT DO NOTHING,
    so a batch of 100,000 events is one statement, and both unique keys (event id; chain id, tx
    hash, log index) reject repeats. Nothing goes to the outbox: the caller publishes.
    """
    batch = _unique(events)
    if not batch:
        return []
    columns = ", ".join(_COLUMNS)
    async with conn.transaction():
        await _copy_incoming(conn, batch)
        rows = await conn.fetch(
            f"INSERT INTO trade_events ({columns}) SELECT {columns} FROM _incoming_events "
            "ON CONFLICT DO NOTHING RETURNING event_id"
        )
    inserted_ids = {r["event_id"] for r in rows}
    return [ev for ev in batch if ev.event_id in inserted_ids]


# What makes two events with one id the same event. An open implied by closed trades carries
# the largest collateral among the closes at hand, which grows as more of its closes arrive, so
# opens are compared on what the position is, not on that estimate.
_COMPARED = (
    "kind",
    "side",
    "leverage",
    "price",
    "collateral_usdc",
    "size_closed_usdc",
    "open_fee_usdc",
    "close_fee_usdc",
    "rollover_fee_usdc",
    "loss_protection_usdc",
    "usdc_sent",
)
_OPEN_COMPARED = ("kind", "side", "leverage", "price")
_RAW_COMPARED = ("gross_pnl_usdc", "tp", "sl")


def _differs_sql() -> str:
    parts = []
    for col in _COMPARED:
        condition = f"t.{col} IS DISTINCT FROM i.{col}"
        if col not in _OPEN_COMPARED:
            condition = f"i.kind <> 'open' AND {condition}"
        parts.append(f"CASE WHEN {condition} THEN '{col}' END")
    for name in _RAW_COMPARED:
        condition = f"(t.raw->>'{name}')::numeric IS DISTINCT FROM (i.raw->>'{name}')::numeric"
        parts.append(f"CASE WHEN i.kind <> 'open' AND {condition} THEN '{name}' END")
    return f"array_remove(ARRAY[{', '.join(parts)}], NULL)"


@dataclass(frozen=True)
class Conflict:
    """An event whose id is stored with other values: the stored one stays, this one is refused."""

    event_id: str
    position_key: str
    fields: dict[str, tuple[str, str]]  # field -> (stored, offered)

    def describe(self) -> str:
        diffs = "; ".join(f"{k} stored {s}, here {o}" for k, (s, o) in sorted(self.fields.items()))
        return f"event {self.event_id} is stored with other values: {diffs}"


@dataclass
class StoreResult:
    inserted: int = 0
    inserted_closes: int = 0
    repeats: int = 0  # same id, same values: already stored
    conflicts: list[Conflict] = field(default_factory=list)
    # Positions withheld because one of their events conflicts, and which of their events were
    # stored before (repeats, not news).
    withheld_positions: set[str] = field(default_factory=set)
    stored_before: set[str] = field(default_factory=set)


async def store_events(
    conn: asyncpg.Connection, events: Sequence[TradeEvent], *, stream: str | None = EVENTS_STREAM
) -> StoreResult:
    """Insert the new events and queue them on the outbox for `stream` (None: store only), inside
    the caller's transaction; repeats are skipped and conflicts (same id, other values) refused
    (see `store_incoming`)."""
    batch = _unique(events)
    if not batch:
        return StoreResult()
    async with conn.transaction():
        await _copy_incoming(conn, batch)
        return await store_incoming(conn, stream=stream)


async def store_incoming(conn: asyncpg.Connection, *, stream: str | None = EVENTS_STREAM) -> StoreResult:
    """Move the batch in `_incoming_events` (filled by `store_events` or a source's own bulk
    path) into `trade_events`, queueing what is new on the outbox, in one statement.

    The position is the unit: when any event of a position conflicts with the stored one, none of
    that position's new events is stored, so a position is never half-written from two versions.
    The statement's CTEs all see the table as it was before it, so the join with `trade_events`
    meets exactly the events stored before.
    """
    columns = ", ".join(_COLUMNS)
    queue = (
        f"""INSERT INTO event_outbox (event_id, stream, ts, rank)
            SELECT event_id, $1, ts, {_RANK_SQL} FROM ins RETURNING 1"""
        if stream is not None
        else "SELECT 1 WHERE $1::text IS NULL"
    )
    rows = await conn.fetch(
        f"""
        WITH seen AS MATERIALIZED (
            SELECT i.event_id, i.position_key, {_differs_sql()} AS differs,
                   t.raw::text AS stored, i.raw::text AS offered
            FROM _incoming_events i JOIN trade_events t USING (event_id)
        ), bad AS (
            SELECT DISTINCT position_key FROM seen WHERE cardinality(differs) > 0
        ), ins AS (
            INSERT INTO trade_events ({columns}) SELECT {columns} FROM _incoming_events i
            WHERE NOT EXISTS (SELECT 1 FROM bad WHERE bad.position_key = i.position_key)
            ON CONFLICT DO NOTHING RETURNING event_id, ts, kind
        ), queued AS ({queue})
        SELECT NULL AS event_id, NULL AS position_key, count(*) AS n,
               count(*) FILTER (WHERE kind <> 'open') AS closes,
               (SELECT count(*) FROM seen) AS seen, (SELECT count(*) FROM queued) AS queued,
               NULL::text[] AS differs, NULL::text AS stored, NULL::text AS offered
        FROM ins
        UNION ALL
        SELECT event_id, position_key, NULL, NULL, NULL, NULL, differs,
               CASE WHEN cardinality(differs) > 0 THEN stored END,
               CASE WHEN cardinality(differs) > 0 THEN offered END
        FROM seen WHERE position_key IN (SELECT position_key FROM bad)
        """,
        stream,
    )
    head = rows[0]
    result = StoreResult(
        inserted=int(head["n"]), inserted_closes=int(head["closes"]), repeats=int(head["seen"])
    )
    for r in rows[1:]:
        result.withheld_positions.add(r["position_key"])
        result.stored_before.add(r["event_id"])
        if not r["differs"]:
            continue
        result.repeats -= 1
        stored, offered = json.loads(r["stored"]), json.loads(r["offered"])
        result.conflicts.append(
            Conflict(
                r["event_id"],
                r["position_key"],
                {k: (str(stored.get(k)), str(offered.get(k))) for k in r["differs"]},
            )
        )
    return result


async def load_events(conn: asyncpg.Connection, *, trader: str | None = None) -> list[TradeEvent]:
    """All events in the order the ledger must see them: by time, opens before closes at a tie."""
    query = "SELECT raw FROM trade_events"
    args: list[object] = []
    if trader is not None:
        query += " WHERE trader = $1"
        args.append(trader.lower())
    query += f" ORDER BY ts, {_RANK_SQL}, event_id"
    return [TradeEvent.from_record(json.loads(r["raw"])) for r in await conn.fetch(query, *args)]


async def publish_events(
    redis: aioredis.Redis, events: list[TradeEvent], *, batch: int = 5000, stream: str = EVENTS_STREAM
) -> None:
    """Announce events on the stream in event order, in pipelined batches (for a caller that
    publishes inside its own transaction, like the indexer; ingest commands use the outbox)."""
    bus = StreamBus(redis, stream)
    ordered = sorted(events, key=event_order)
    for start in range(0, len(ordered), batch):
        await bus.publish_many([event_record(ev) for ev in ordered[start : start + batch]])


# XADD many entries in one call: the same entries `StreamBus.publish_many` writes (field `data`,
# approximate MAXLEN trim), three times faster than a pipeline of single XADDs because Redis,
# not the client, loops. A batch blocks Redis for a few milliseconds.
_XADD_MANY = """
local maxlen = ARGV[1]
for i = 2, #ARGV do
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'data', ARGV[i])
end
return #ARGV - 1
"""


async def _xadd_texts(redis: aioredis.Redis, stream: str, payloads: list[str]) -> None:
    """Entries from JSON texts PostgreSQL already serialized: no parse and re-dump on the way."""
    if not payloads:
        return
    maxlen = StreamBus(redis, stream).maxlen or 2**62
    await redis.eval(_XADD_MANY, 1, stream, maxlen, *payloads)


async def publish_pending(
    conn: asyncpg.Connection,
    redis: aioredis.Redis,
    *,
    stream: str = EVENTS_STREAM,
    batch: int = 10_000,
    progress: Any = None,
) -> int:
    """Sweep the outbox of `stream` onto it, in event order; returns how many were published.

    One sweeper per stream at a time (an advisory lock: a second one waits, then finds little
    left); each batch is deleted only after Redis has accepted it, so a crash republishes at
    most one batch.
    """
    published = 0
    await conn.execute("SELECT pg_advisory_lock(hashtext('event_outbox:' || $1))", stream)
    try:
        # A bulk ingest has just filled the outbox: without fresh statistics the planner takes it
        # for empty and each page below costs a scan (a sweep of 366,000 events took a minute).
        await conn.execute("ANALYZE event_outbox")
        page = """SELECT o.event_id, o.ts, o.rank, e.raw::text AS raw
                  FROM event_outbox o LEFT JOIN trade_events e USING (event_id)
                  WHERE o.stream = $1 {after}
                  ORDER BY o.ts, o.rank, o.event_id LIMIT {batch}"""
        first = await conn.prepare(page.format(after="", batch=batch))
        more = await conn.prepare(
            page.format(after="AND (o.ts, o.rank, o.event_id) > ($2, $3, $4)", batch=batch)
        )
        # Deleted by their range of the order index (a walk of the index, not of the table),
        # and by id within it: a row another writer queued meanwhile is never deleted unseen.
        delete = await conn.prepare(
            """DELETE FROM event_outbox WHERE stream = $1
               AND (ts, rank, event_id) >= ($2, $3, $4) AND (ts, rank, event_id) <= ($5, $6, $7)
               AND event_id = ANY($8::text[])"""
        )
        rows = await first.fetch(stream)
        while rows:
            await _xadd_texts(redis, stream, [r["raw"] for r in rows if r["raw"] is not None])
            lo, hi = rows[0], rows[-1]
            await delete.fetch(
                stream,
                lo["ts"],
                lo["rank"],
                lo["event_id"],
                hi["ts"],
                hi["rank"],
                hi["event_id"],
                [r["event_id"] for r in rows],
            )
            published += len(rows)
            if progress is not None:
                progress(published)
            last = rows[-1]
            rows = await more.fetch(stream, last["ts"], last["rank"], last["event_id"])
        return published
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext('event_outbox:' || $1))", stream)


async def unpublished(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Stored events still waiting for the stream, per stream: count and oldest."""
    rows = await conn.fetch(
        "SELECT stream, count(*) AS n, min(enqueued_at) AS oldest, min(event_id) AS example "
        "FROM event_outbox GROUP BY stream ORDER BY stream"
    )
    return [dict(r) for r in rows]
