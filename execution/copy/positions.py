"""The follower's books: copied positions (`copy_positions`), the per-leader attribution of their
PnL, fees and slippage (`copy_performance_attribution`), and the day's realized PnL the limits
count. Every read and write of them is a named query here; the engine, reconciliation, the
venues and the service ask this module.

The trading day is the UTC day, defined once (`trading_day_start`): the instant is computed here
and compared as a `timestamptz`, so no query depends on the session's or the server's time zone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import asyncpg


def trading_day_start(now: datetime | None = None) -> datetime:
    """00:00 UTC of the day containing `now`: where daily limits and attribution periods begin."""
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def trading_day(now: datetime | None = None) -> date:
    return trading_day_start(now).date()


@dataclass(frozen=True, slots=True)
class Books:
    exposure_usdc: int  # notional of the profile's open copies, across follows
    realized_today_usdc: int  # realized PnL of closes settled since the trading day began


# Set-based on purpose (one pass over each table, whatever the planner's statistics say): a
# subquery per profile became a table scan per profile once the books outgrew stale statistics.
_BOOKS = """
SELECT p.id AS profile_id, coalesce(e.exposure, 0) AS exposure, coalesce(t.today, 0) AS today
FROM unnest($1::bigint[]) AS p(id)
LEFT JOIN (SELECT profile_id, sum(collateral_usdc * leverage) AS exposure FROM copy_positions
           WHERE status = 'open' AND profile_id = ANY($1::bigint[]) GROUP BY profile_id) e ON e.profile_id = p.id
LEFT JOIN (SELECT profile_id, sum(pnl_usdc) AS today FROM copy_intents
           WHERE action IN ('close', 'partial_close') AND state IN ('filled', 'resolved') AND updated_at >= $2
             AND profile_id = ANY($1::bigint[]) GROUP BY profile_id) t ON t.profile_id = p.id
"""


async def books(conn: asyncpg.Connection, profile_ids: list[int], since: datetime) -> dict[int, Books]:
    """Exposure and realized PnL since `since` (partial closes included), per profile. Sums are
    numeric in SQL and exact integers here: no bigint overflow whatever the sizes stored."""
    rows = await conn.fetch(_BOOKS, profile_ids, since)
    return {r["profile_id"]: Books(int(r["exposure"]), int(r["today"])) for r in rows}


async def realized_since(conn: asyncpg.Connection, profile_ids: list[int], since: datetime) -> dict[int, int]:
    return {pid: b.realized_today_usdc for pid, b in (await books(conn, profile_ids, since)).items()}


@dataclass(frozen=True, slots=True)
class CopiedPosition:
    profile_id: int
    leader_position_key: str
    position_ref: str
    collateral_usdc: int
    side: str


async def open_copies(
    conn: asyncpg.Connection, profile_ids: list[int], leader_position_keys: list[str]
) -> dict[tuple[int, str], CopiedPosition]:
    """The followers' open copies of these leader positions."""
    rows = await conn.fetch(
        "SELECT profile_id, leader_position_key, venue_position_ref, collateral_usdc, side FROM copy_positions "
        "WHERE status = 'open' AND profile_id = ANY($1::bigint[]) AND leader_position_key = ANY($2::text[])",
        profile_ids,
        leader_position_keys,
    )
    return {
        (r["profile_id"], r["leader_position_key"]): CopiedPosition(
            r["profile_id"],
            r["leader_position_key"],
            r["venue_position_ref"],
            r["collateral_usdc"],
            r["side"],
        )
        for r in rows
    }


@dataclass(frozen=True, slots=True)
class OpenedCopy:
    profile_id: int
    follow_id: int | None
    leader: str
    leader_position_key: str | None
    position_ref: str | None
    pair_index: int | None
    side: str | None
    collateral_usdc: int
    leverage: Decimal | None
    entry_price: Decimal | None
    leader_entry_price: Decimal | None
    open_fee_usdc: int


async def record_opens(conn: asyncpg.Connection, opened: list[OpenedCopy]) -> None:
    if not opened:
        return
    await conn.execute(
        """
        INSERT INTO copy_positions (profile_id, follow_id, leader_address, leader_position_key,
            venue_position_ref, pair_index, side, collateral_usdc, leverage, entry_price,
            leader_entry_price, open_fee_usdc)
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::integer[],
            $7::text[], $8::bigint[], $9::numeric[], $10::numeric[], $11::numeric[], $12::bigint[])
        ON CONFLICT (profile_id, leader_position_key) DO NOTHING
        """,
        *[list(column) for column in zip(*[_open_row(o) for o in opened], strict=True)],
    )


def _open_row(o: OpenedCopy) -> tuple[object, ...]:
    return (
        o.profile_id,
        o.follow_id,
        o.leader,
        o.leader_position_key,
        o.position_ref,
        o.pair_index,
        o.side,
        o.collateral_usdc,
        o.leverage,
        o.entry_price,
        o.leader_entry_price,
        o.open_fee_usdc,
    )


@dataclass(frozen=True, slots=True)
class ClosedCopy:
    profile_id: int
    position_ref: str | None
    collateral_usdc: int  # closed
    fee_usdc: int
    pnl_usdc: int
    exit_price: Decimal | None
    leader_exit_price: Decimal | None
    whole: bool  # the leader closed all of it: the copy closes whatever is left


_CLOSE = """
UPDATE copy_positions c SET collateral_usdc = c.collateral_usdc - u.amount,
    close_fee_usdc = c.close_fee_usdc + u.fee, realized_pnl_usdc = c.realized_pnl_usdc + u.pnl,
    exit_price = u.price, leader_exit_price = u.leader_price,
    status = CASE WHEN u.whole OR c.collateral_usdc - u.amount <= 0 THEN 'closed' ELSE 'open' END,
    closed_at = CASE WHEN u.whole OR c.collateral_usdc - u.amount <= 0 THEN now() ELSE c.closed_at END,
    closed_by = CASE WHEN u.whole OR c.collateral_usdc - u.amount <= 0 THEN 'leader' ELSE c.closed_by END
FROM unnest($1::integer[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
            $7::numeric[], $8::numeric[], $9::boolean[])
     AS u(k, profile_id, ref, amount, fee, pnl, price, leader_price, whole)
WHERE c.profile_id = u.profile_id AND c.venue_position_ref = u.ref AND c.status = 'open'
RETURNING u.k, c.status
"""


async def record_closes(conn: asyncpg.Connection, closes: list[ClosedCopy]) -> list[bool]:
    """Apply closes in order; per close, whether it closed the copy. Closes of one position in
    the same batch (a partial close, then the close) are applied one round after the other."""
    closed = [False] * len(closes)
    pending = list(range(len(closes)))
    while pending:
        seen: set[tuple[int, str | None]] = set()
        batch, later = [], []
        for k in pending:
            key = (closes[k].profile_id, closes[k].position_ref)
            (later if key in seen else batch).append(k)
            seen.add(key)
        rows = await conn.fetch(
            _CLOSE,
            batch,
            [closes[k].profile_id for k in batch],
            [closes[k].position_ref for k in batch],
            [closes[k].collateral_usdc for k in batch],
            [closes[k].fee_usdc for k in batch],
            [closes[k].pnl_usdc for k in batch],
            [closes[k].exit_price for k in batch],
            [closes[k].leader_exit_price for k in batch],
            [closes[k].whole for k in batch],
        )
        for r in rows:
            closed[r["k"]] = r["status"] == "closed"
        pending = later
    return closed


@dataclass(frozen=True, slots=True)
class Attribution:
    profile_id: int
    leader: str
    day: date
    copied_trades: int = 0
    realized_pnl_usdc: int = 0
    fees_usdc: int = 0
    slippage_cost_usdc: int = 0


async def attribute(conn: asyncpg.Connection, rows: Iterable[Attribution]) -> None:
    """Add to each (profile, leader, day)'s totals (summed here first: one row per key)."""
    totals: dict[tuple[int, str, date], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for a in rows:
        t = totals[(a.profile_id, a.leader, a.day)]
        t[0] += a.copied_trades
        t[1] += a.realized_pnl_usdc
        t[2] += a.fees_usdc
        t[3] += a.slippage_cost_usdc
    if not totals:
        return
    keys, values = list(totals), list(totals.values())
    await conn.execute(
        """
        INSERT INTO copy_performance_attribution (profile_id, leader_address, period_start, period_end,
            copied_trades, realized_pnl_usdc, fees_usdc, slippage_cost_usdc)
        SELECT p, l, d, d, n, pnl, fees, slip
        FROM unnest($1::bigint[], $2::text[], $3::date[], $4::integer[], $5::bigint[], $6::bigint[], $7::bigint[])
             AS t(p, l, d, n, pnl, fees, slip)
        ON CONFLICT (profile_id, leader_address, period_start) DO UPDATE SET
            copied_trades = copy_performance_attribution.copied_trades + EXCLUDED.copied_trades,
            realized_pnl_usdc = copy_performance_attribution.realized_pnl_usdc + EXCLUDED.realized_pnl_usdc,
            fees_usdc = copy_performance_attribution.fees_usdc + EXCLUDED.fees_usdc,
            slippage_cost_usdc = copy_performance_attribution.slippage_cost_usdc + EXCLUDED.slippage_cost_usdc
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [v[0] for v in values],
        [v[1] for v in values],
        [v[2] for v in values],
        [v[3] for v in values],
    )


# --- reconciliation ------------------------------------------------------------------------------


async def open_of_profile(conn: asyncpg.Connection, profile_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, venue_position_ref, collateral_usdc FROM copy_positions WHERE profile_id = $1 AND status = 'open'",
        profile_id,
    )


async def last_closed_matching(
    conn: asyncpg.Connection, profile_id: int, position_ref: str, side: str, entry_price: Decimal
) -> asyncpg.Record | None:
    """The journal's closed copy that a position still held on the venue would be."""
    return await conn.fetchrow(
        "SELECT id, venue_position_ref, collateral_usdc FROM copy_positions WHERE profile_id = $1 "
        "AND venue_position_ref = $2 AND status = 'closed' AND side = $3 AND entry_price = $4 "
        "ORDER BY id DESC LIMIT 1",
        profile_id,
        position_ref,
        side,
        entry_price,
    )


async def close_by_venue(conn: asyncpg.Connection, copy_id: int) -> None:
    await conn.execute(
        "UPDATE copy_positions SET status = 'closed', closed_at = now(), closed_by = 'venue' "
        "WHERE id = $1 AND status = 'open'",
        copy_id,
    )


async def resize(conn: asyncpg.Connection, copy_id: int, collateral_usdc: int) -> None:
    await conn.execute(
        "UPDATE copy_positions SET collateral_usdc = $2 WHERE id = $1 AND status = 'open'",
        copy_id,
        collateral_usdc,
    )


# --- what the follower sees ----------------------------------------------------------------------


async def of_profile(conn: asyncpg.Connection, profile_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, leader_address, leader_position_key, venue_position_ref, pair_index, side, collateral_usdc, "
        "leverage, entry_price, leader_entry_price, exit_price, leader_exit_price, open_fee_usdc, close_fee_usdc, "
        "realized_pnl_usdc, status, is_manual, opened_at, closed_at FROM copy_positions "
        "WHERE profile_id = $1 ORDER BY id",
        profile_id,
    )


async def per_leader(conn: asyncpg.Connection, profile_id: int) -> list[asyncpg.Record]:
    """Per leader (manual trades as 'manual'): positions, open ones, realized PnL, fees, and the
    slippage cost attributed to that leader's copies."""
    return await conn.fetch(
        """
        SELECT b.leader, b.positions, b.open, b.realized_pnl_usdc, b.fees_usdc,
               coalesce(a.slippage_cost_usdc, 0)::bigint AS slippage_cost_usdc
        FROM (SELECT CASE WHEN is_manual THEN 'manual' ELSE leader_address END AS leader,
                     count(*) AS positions, count(*) FILTER (WHERE status = 'open') AS open,
                     sum(realized_pnl_usdc)::bigint AS realized_pnl_usdc,
                     sum(open_fee_usdc + close_fee_usdc)::bigint AS fees_usdc
              FROM copy_positions WHERE profile_id = $1 GROUP BY 1) b
        LEFT JOIN (SELECT leader_address, sum(slippage_cost_usdc) AS slippage_cost_usdc
                   FROM copy_performance_attribution WHERE profile_id = $1 GROUP BY 1) a
               ON a.leader_address = b.leader
        ORDER BY b.leader
        """,
        profile_id,
    )


async def open_count(conn: asyncpg.Connection, profile_id: int) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM copy_positions WHERE profile_id = $1 AND status = 'open'", profile_id
    )


# --- integrity ------------------------------------------------------------------------------------


async def open_with_leader_closed(conn: asyncpg.Connection, grace_s: float) -> list[asyncpg.Record]:
    """Open copies whose leader position was closed (close, TP, SL or liquidation stored more
    than `grace_s` ago) and that no engine is still working on: copies left open."""
    return await conn.fetch(
        """
        WITH open_copies AS (
            SELECT id, profile_id, leader_address, leader_position_key, opened_at FROM copy_positions
            WHERE status = 'open' AND NOT is_manual AND leader_position_key IS NOT NULL
        ), leader_closed AS (
            SELECT DISTINCT ON (position_key) position_key, kind, ts, event_id FROM trade_events
            WHERE kind IN ('close', 'tp', 'sl', 'liquidation')
              AND position_key IN (SELECT leader_position_key FROM open_copies)
              AND inserted_at < now() - make_interval(secs => $2)
            ORDER BY position_key, ts
        )
        SELECT o.id, o.profile_id, o.leader_address, o.leader_position_key, l.kind AS leader_closed_by,
               l.ts AS leader_closed_at, l.event_id AS leader_event_id
        FROM open_copies o JOIN leader_closed l ON l.position_key = o.leader_position_key
        WHERE NOT EXISTS (SELECT 1 FROM copy_intents i WHERE i.profile_id = o.profile_id
                          AND i.leader_position_key = o.leader_position_key AND i.state = ANY($1::text[]))
        ORDER BY o.id
        """,
        ["planned", "sent", "unknown"],
        grace_s,
    )
