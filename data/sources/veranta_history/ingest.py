"""Load closed-trade files in the history API's shape into `trade_events`, idempotently.

Each record is checked where it enters (`records.parse_trade`); a bad one is rejected with its
file, index and reason, the rest go on. A record with the identity of a stored one (same
position, close time and size) is a repeat when its values agree and a conflict when they do
not; a conflict withholds its whole position (see `store_incoming`). Files are parsed in chunks of
about `CHUNK_TRADES` trades, each parsed in a worker thread while PostgreSQL stores the one
before, all inside the caller's transaction: a crash stores nothing, and the events stored are
queued on the outbox in the same transaction, so none can be stored and never published.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from data.events import TradeEvent
from data.sources.veranta_history.records import (
    SOURCE,
    VENUE,
    HistoryTrade,
    RecordError,
    close_kind,
    load_file,
    parse_trade,
    to_events,
)
from data.store import StoreResult, prepare_incoming, store_incoming
from data.units import usdc_to_micro
from infra.bus import EVENTS_STREAM

CHUNK_TRADES = 40_000

# The bulk path: one row per checked record, COPYed; PostgreSQL turns the rows into exactly the
# events `events_for` builds (each close and one implied open per position, opened with the
# largest collateral among its closes), raw JSON included, on its own core while this process
# parses the next files. Decimals travel as the text Python prints for them, so `raw` holds
# the same strings either way; a test holds the two paths to the same rows.
_TRADE_COLUMNS = (
    "n",
    "trader",
    "pair_index",
    "pair",
    "trade_index",
    "side",
    "open_ts",
    "ts",
    "kind",
    "leverage",
    "open_price",
    "close_price",
    "tp",
    "sl",
    "collateral_usdc",
    "size_closed_usdc",
    "gross_pnl_usdc",
    "usdc_sent",
    "close_fee_usdc",
    "rollover_fee_usdc",
    "position_key",
    "close_id",
)
_CREATE_TRADES = """
CREATE TEMP TABLE IF NOT EXISTS _incoming_trades (
    n integer, trader text, pair_index integer, pair text, trade_index integer, side text,
    open_ts bigint, ts bigint, kind text, leverage text, open_price text, close_price text,
    tp text, sl text, collateral_usdc bigint, size_closed_usdc bigint, gross_pnl_usdc bigint,
    usdc_sent bigint, close_fee_usdc bigint, rollover_fee_usdc bigint, position_key text, close_id text
) ON COMMIT DROP;
TRUNCATE _incoming_trades
"""
_TRADES_TO_EVENTS = f"""
INSERT INTO _incoming_events (event_id, venue, source, trader, pair_index, pair, kind, position_key,
    trade_index, open_ts, side, collateral_usdc, leverage, price, size_closed_usdc, open_fee_usdc,
    close_fee_usdc, rollover_fee_usdc, loss_protection_usdc, usdc_sent, ts, raw)
SELECT close_id, '{VENUE}', '{SOURCE}', trader, pair_index, pair, kind, position_key, trade_index,
    open_ts, side, collateral_usdc, leverage::numeric, close_price::numeric, size_closed_usdc, 0,
    close_fee_usdc, rollover_fee_usdc, 0, usdc_sent, to_timestamp(ts),
    jsonb_strip_nulls(jsonb_build_object(
        'event_id', close_id, 'venue', '{VENUE}', 'source', '{SOURCE}', 'trader', trader,
        'pair_index', pair_index, 'kind', kind, 'trade_index', trade_index, 'open_ts', open_ts,
        'ts', ts, 'side', side, 'collateral_usdc', collateral_usdc, 'leverage', leverage,
        'price', close_price, 'size_closed_usdc', size_closed_usdc, 'open_fee_usdc', 0,
        'close_fee_usdc', close_fee_usdc, 'rollover_fee_usdc', rollover_fee_usdc,
        'loss_protection_usdc', 0, 'usdc_sent', usdc_sent, 'gross_pnl_usdc', gross_pnl_usdc,
        'pair', pair, 'tp', tp, 'sl', sl))
FROM _incoming_trades
UNION ALL
(SELECT DISTINCT ON (position_key) 'api:' || position_key || ':open', '{VENUE}', '{SOURCE}', trader,
    pair_index, pair, 'open', position_key, trade_index, open_ts, side, opening, leverage::numeric,
    open_price::numeric, NULL, 0, 0, 0, 0, NULL, to_timestamp(open_ts),
    jsonb_strip_nulls(jsonb_build_object(
        'event_id', 'api:' || position_key || ':open', 'venue', '{VENUE}', 'source', '{SOURCE}',
        'trader', trader, 'pair_index', pair_index, 'kind', 'open', 'trade_index', trade_index,
        'open_ts', open_ts, 'ts', open_ts, 'side', side, 'collateral_usdc', opening,
        'leverage', leverage, 'price', open_price, 'open_fee_usdc', 0, 'close_fee_usdc', 0,
        'rollover_fee_usdc', 0, 'loss_protection_usdc', 0, 'pair', pair))
 FROM (SELECT *, max(collateral_usdc) OVER (PARTITION BY position_key) AS opening FROM _incoming_trades) t
 ORDER BY position_key, n)
"""


def _micro(amount: Decimal) -> int:
    return usdc_to_micro(amount, exact=False)


def trade_row(n: int, t: HistoryTrade, key: str, close_id: str) -> tuple[object, ...]:
    return (
        n,
        t.trader,
        t.pair_index,
        t.symbol or None,
        t.trade_index,
        t.side.value,
        t.opened_at,
        t.closed_at,
        close_kind(t).value,
        str(t.leverage),
        str(t.open_price),
        str(t.close_price),
        str(t.tp),
        str(t.sl),
        _micro(t.collateral),
        _micro(t.position_size),
        _micro(t.gross),
        _micro(t.usdc_sent),
        _micro(t.closing_fee),
        _micro(t.funding),
        key,
        close_id,
    )


async def store_trades(
    conn: asyncpg.Connection, rows: list[tuple[object, ...]], *, stream: str | None = EVENTS_STREAM
) -> StoreResult:
    """Checked records (`trade_row`s) into `trade_events` as their events, through the outbox."""
    if not rows:
        return StoreResult()
    async with conn.transaction():
        await conn.execute(_CREATE_TRADES)
        await conn.copy_records_to_table("_incoming_trades", records=rows, columns=list(_TRADE_COLUMNS))
        await prepare_incoming(conn)
        await conn.execute(_TRADES_TO_EVENTS)
        return await store_incoming(conn, stream=stream)


@dataclass
class IngestReport:
    files: int = 0
    trades: int = 0
    inserted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    published: int | None = None
    # One entry per record (or file) not stored: {"file", "trade"?, "reason"} or {..., "conflict"}.
    rejections: list[dict[str, object]] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        keys = ["files", "trades", "inserted", "duplicates", "conflicts", "rejected"]
        out = {k: getattr(self, k) for k in keys}
        if self.published is not None:
            out["published"] = self.published
        return out

    @property
    def clean(self) -> bool:
        """Nothing rejected and nothing in conflict: what the command's exit status reports."""
        return not self.rejected and not self.conflicts


def describe_problem(item: dict[str, object]) -> str:
    """A rejection or conflict as the one line a person reads on stderr."""
    where = f"{item['file']}" + (f": trade {item['trade']}" if "trade" in item else "")
    if "conflict" in item:
        return f"conflict: {where}: {item['conflict']}"
    return f"rejected: {where}: {item['reason']}"


def events_for(trades: list[HistoryTrade]) -> list[TradeEvent]:
    """Each close plus one implied open per position, opened with its largest seen collateral."""
    opening: dict[str, Decimal] = {}
    for t in trades:
        key = t.position_key
        if key not in opening or t.collateral > opening[key]:
            opening[key] = t.collateral
    events: dict[str, TradeEvent] = {}
    for t in trades:
        opened, closed = to_events(t, opening[t.position_key])
        events.setdefault(opened.event_id, opened)
        events.setdefault(closed.event_id, closed)
    return list(events.values())


@dataclass
class _Record:
    origin: str
    index: int
    trade: HistoryTrade
    close_id: str
    position: str


@dataclass
class _Chunk:
    """One chunk parsed and checked against itself, ready to store."""

    records: list[_Record] = field(default_factory=list)
    rows: list[tuple[object, ...]] = field(default_factory=list)
    files: int = 0
    trades: int = 0
    duplicates: int = 0  # repeated within the input with the same values
    problems: list[dict[str, object]] = field(default_factory=list)
    conflicts: int = 0


def _check_chunk(chunk: _Chunk, parsed: list[_Record]) -> None:
    """Repeats and conflicts within the input: the first record of an identity wins; a later one
    with other values (or a position opened twice differently) withholds that position."""
    first_close: dict[str, _Record] = {}
    first_open: dict[str, _Record] = {}
    bad: dict[str, str] = {}
    kept: list[_Record] = []
    for r in parsed:
        t = r.trade
        seen = first_close.get(r.close_id)
        if seen is not None:
            if seen.trade == t:
                chunk.duplicates += 1
            else:
                bad.setdefault(r.position, f"trade {r.index} of {r.origin}")
                chunk.problems.append(
                    {
                        "file": r.origin,
                        "trade": r.index,
                        "conflict": f"same position, close time and size as trade {seen.index} of "
                        f"{seen.origin}, other values",
                    }
                )
                chunk.conflicts += 1
            continue
        first_close[r.close_id] = r
        opened = first_open.setdefault(r.position, r)
        if (opened.trade.side, opened.trade.leverage, opened.trade.open_price) != (
            t.side,
            t.leverage,
            t.open_price,
        ):
            bad.setdefault(r.position, f"trade {r.index} of {r.origin}")
            chunk.problems.append(
                {
                    "file": r.origin,
                    "trade": r.index,
                    "conflict": f"position {r.position} opened with another side, leverage or price "
                    f"in trade {opened.index} of {opened.origin}",
                }
            )
            chunk.conflicts += 1
            continue
        kept.append(r)
    for r in kept:
        if r.position in bad:
            chunk.problems.append(
                {
                    "file": r.origin,
                    "trade": r.index,
                    "conflict": f"withheld: its position conflicts ({bad[r.position]})",
                }
            )
            chunk.conflicts += 1
        else:
            chunk.rows.append(trade_row(len(chunk.records), r.trade, r.position, r.close_id))
            chunk.records.append(r)


def parse_records(trader: str, records: list[Any], origin: str, chunk: _Chunk, parsed: list[_Record]) -> None:
    chunk.files += 1
    for i, rec in enumerate(records):
        chunk.trades += 1
        try:
            trade = parse_trade(trader, rec)
        except RecordError as exc:
            chunk.problems.append({"file": origin, "trade": i, "reason": str(exc)})
            continue
        key = trade.position_key
        parsed.append(
            _Record(origin, i, trade, f"api:{key}:close:{trade.closed_at}:{trade.position_size}", key)
        )


def _parse_files(paths: list[Path]) -> _Chunk:
    chunk, parsed = _Chunk(), []
    for path in paths:
        try:
            trader, records = load_file(path)
        except RecordError as exc:
            chunk.files += 1
            chunk.problems.append({"file": str(path), "reason": str(exc).removeprefix(f"{path}: ")})
            continue
        parse_records(trader, records, str(path), chunk, parsed)
    _check_chunk(chunk, parsed)
    return chunk


def _merge(report: IngestReport, chunk: _Chunk, stored: StoreResult) -> None:
    """Count each record of the chunk once: inserted, repeat, conflict or rejected."""
    report.files += chunk.files
    report.trades += chunk.trades
    report.duplicates += chunk.duplicates
    report.conflicts += chunk.conflicts
    report.rejections.extend(chunk.problems)
    report.rejected += sum(1 for p in chunk.problems if "reason" in p)
    conflicting = {c.event_id: c for c in stored.conflicts}
    open_conflicts = {c.position_key: c for c in stored.conflicts if c.event_id.endswith(":open")}
    for r in chunk.records:
        if r.position not in stored.withheld_positions:
            continue
        if r.close_id in stored.stored_before and r.close_id not in conflicting:
            continue  # a repeat, counted below
        c = conflicting.get(r.close_id) or open_conflicts.get(r.position)
        reason = c.describe() if c is not None else "withheld: another record of its position conflicts"
        report.rejections.append({"file": r.origin, "trade": r.index, "conflict": reason})
        report.conflicts += 1
    report.inserted += stored.inserted_closes
    withheld_new = sum(
        1
        for r in chunk.records
        if r.position in stored.withheld_positions
        and (r.close_id not in stored.stored_before or r.close_id in conflicting)
    )
    report.duplicates += len(chunk.records) - stored.inserted_closes - withheld_new


def _chunks(paths: list[Path], chunk_trades: int) -> Iterator[list[Path]]:
    """Files grouped so each group holds about `chunk_trades` trades (by file size: the parse
    happens in the worker, not here)."""
    group: list[Path] = []
    size = 0
    budget = chunk_trades * 370  # bytes per trade record in the API's JSON
    for p in paths:
        group.append(p)
        try:
            size += p.stat().st_size
        except OSError:
            pass  # reported when the worker reads it
        if size >= budget:
            yield group
            group, size = [], 0
    if group:
        yield group


async def ingest_files(
    conn: asyncpg.Connection,
    paths: list[Path],
    *,
    stream: str | None = EVENTS_STREAM,
    chunk_trades: int = CHUNK_TRADES,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Every file in one transaction; returns the counts and one entry per record not stored.
    The new events are queued for `stream` (None: stored only); `publish_pending` sends them."""
    report = IngestReport()
    loop = asyncio.get_running_loop()
    groups = list(_chunks(paths, chunk_trades))
    async with conn.transaction():
        pending = loop.run_in_executor(None, _parse_files, groups[0]) if groups else None
        for n in range(len(groups)):
            chunk = await pending  # type: ignore[misc]
            # Parse the next group in the worker while PostgreSQL stores this one.
            pending = loop.run_in_executor(None, _parse_files, groups[n + 1]) if n + 1 < len(groups) else None
            _merge(report, chunk, await store_trades(conn, chunk.rows, stream=stream))
            if progress is not None:
                progress(len(groups[n]))
    return report


async def ingest_records(
    conn: asyncpg.Connection,
    trader: str,
    records: list[Any],
    origin: str,
    report: IngestReport,
    *,
    stream: str | None = EVENTS_STREAM,
) -> None:
    """One trader's closed-trade records, whatever brought them (the API's pages): checked and
    stored like a file's."""
    chunk, parsed = _Chunk(), []
    parse_records(trader, records, origin, chunk, parsed)
    _check_chunk(chunk, parsed)
    _merge(report, chunk, await store_trades(conn, chunk.rows, stream=stream))
