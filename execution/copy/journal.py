"""The execution journal (`copy_intents`): written before anything is sent, claimed by one
process at a time, resolved by asking the venue.

- `intent_id(follower, leader event, action)` is deterministic, and the primary key: a second
  plan of the same copy inserts nothing and the first plan's size is what gets sent.
- A process works an intent only while its session holds the intent's advisory lock; the lock
  dies with the session (SIGKILL or a lost connection included), so another engine can take over
  at once, and two engines never send the same intent concurrently.
- An intent is marked `sent` (committed) before the venue is called. Found later in `sent` or
  `unknown`, its outcome is looked up at the venue by the intent id; only if the venue has no
  record of it is it sent — a lookup, never a blind resend.
- One open per follower and leader position (a unique index), whichever source announced it:
  that row is also how a close that stopped waiting for its open keeps a late open from being
  copied (`stop_waiting`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import asyncpg

from execution.copy.model import OPEN_STATES, CopyAction, IntentState, Refusal
from execution.rows import as_json

_OPEN_STATES = [s.value for s in OPEN_STATES]
# A close in these states has closed, or will close, the whole copy.
_CLOSING_STATES = [*_OPEN_STATES, IntentState.FILLED.value, IntentState.RESOLVED.value]
# Written out, as the partial indexes on intents in flight say it: the planner then uses them.
_IN_FLIGHT = "state IN ('planned', 'sent', 'unknown')"
assert {s.value for s in OPEN_STATES} == {"planned", "sent", "unknown"}


def intent_id(profile_id: int, leader_event_id: str, action: CopyAction | str) -> str:
    return hashlib.sha256(f"{profile_id}|{leader_event_id}|{action}".encode()).hexdigest()[:32]


@dataclass(slots=True)
class Intent:
    """One copy of one leader event for one follower, as planned and as worked."""

    intent_id: str
    profile_id: int
    follow_id: int | None
    leader: str
    leader_event_id: str
    action: CopyAction
    venue: str
    state: IntentState = IntentState.PLANNED
    refusal: Refusal | None = None
    pair_index: int | None = None
    side: str | None = None
    collateral_usdc: int | None = None
    leverage: Decimal | None = None
    requested_price: Decimal | None = None
    position_ref: str | None = None
    leader_position_key: str | None = None
    tp: Decimal | None = None
    sl: Decimal | None = None
    leader_collateral_usdc: int | None = None
    leader_closed_usdc: int | None = None
    error: str | None = None
    # What sending needs beyond the row: the venue account, the follow's slippage bound.
    account: str = ""
    slippage_bps: int = 50
    attempts: int = 0
    created_at: datetime | None = None
    # Written as `sent` by this session a moment ago and not sent yet: no lookup needed.
    fresh: bool = False

    def __post_init__(self) -> None:
        if self.refusal is not None and self.state is IntentState.PLANNED:
            self.state = IntentState.REFUSED

    @property
    def waits_for_open(self) -> bool:
        """A close or TP/SL update planned before the follower's copy of the open settled."""
        return (
            self.state is IntentState.PLANNED
            and self.action is not CopyAction.OPEN
            and self.position_ref is None
        )


_PLAN = """
INSERT INTO copy_intents (intent_id, profile_id, follow_id, leader_address, leader_event_id, action, state,
    refusal_reason, pair_index, side, collateral_usdc, leverage, requested_price, venue, position_ref,
    leader_position_key, tp, sl, leader_collateral_usdc, leader_closed_usdc, error, attempts)
SELECT * FROM json_to_recordset($1::json) AS r(intent_id text, profile_id bigint, follow_id bigint,
    leader_address text, leader_event_id text, action text, state text, refusal_reason text, pair_index integer,
    side text, collateral_usdc bigint, leverage numeric, requested_price numeric, venue text, position_ref text,
    leader_position_key text, tp numeric, sl numeric, leader_collateral_usdc bigint, leader_closed_usdc bigint,
    error text, attempts integer)
ON CONFLICT DO NOTHING RETURNING intent_id
"""


async def plan(conn: asyncpg.Connection, intents: list[Intent]) -> set[str]:
    """Write intents (planned, refused, or `sent` when this session holds their locks and sends
    them next) in one statement; returns the ids that were new."""
    if not intents:
        return set()
    rows = as_json(
        {
            "intent_id": i.intent_id,
            "profile_id": i.profile_id,
            "follow_id": i.follow_id,
            "leader_address": i.leader,
            "leader_event_id": i.leader_event_id,
            "action": i.action,
            "state": i.state,
            "refusal_reason": i.refusal,
            "pair_index": i.pair_index,
            "side": i.side,
            "collateral_usdc": i.collateral_usdc,
            "leverage": i.leverage,
            "requested_price": i.requested_price,
            "venue": i.venue,
            "position_ref": i.position_ref,
            "leader_position_key": i.leader_position_key,
            "tp": i.tp,
            "sl": i.sl,
            "leader_collateral_usdc": i.leader_collateral_usdc,
            "leader_closed_usdc": i.leader_closed_usdc,
            "error": i.error,
            "attempts": i.attempts,
        }
        for i in intents
    )
    return {r["intent_id"] for r in await conn.fetch(_PLAN, rows)}


async def claim(lock_conn: asyncpg.Connection, ids: list[str]) -> list[str]:
    """The ids whose advisory lock this session got (others are being worked elsewhere)."""
    if not ids:
        return []
    rows = await lock_conn.fetch(
        "SELECT id FROM unnest($1::text[]) AS t(id) WHERE pg_try_advisory_lock(hashtextextended(id, 7))", ids
    )
    return [r["id"] for r in rows]


async def release(lock_conn: asyncpg.Connection, ids: list[str]) -> None:
    if ids:
        await lock_conn.execute(
            "SELECT pg_advisory_unlock(hashtextextended(id, 7)) FROM unnest($1::text[]) AS t(id)", ids
        )


def _intent(r: asyncpg.Record) -> Intent:
    return Intent(
        intent_id=r["intent_id"],
        profile_id=r["profile_id"],
        follow_id=r["follow_id"],
        leader=r["leader_address"],
        leader_event_id=r["leader_event_id"],
        action=CopyAction(r["action"]),
        venue=r["venue"],
        state=IntentState(r["state"]),
        refusal=Refusal(r["refusal_reason"]) if r["refusal_reason"] else None,
        pair_index=r["pair_index"],
        side=r["side"],
        collateral_usdc=r["collateral_usdc"],
        leverage=r["leverage"],
        requested_price=r["requested_price"],
        position_ref=r["position_ref"],
        leader_position_key=r["leader_position_key"],
        tp=r["tp"],
        sl=r["sl"],
        leader_collateral_usdc=r["leader_collateral_usdc"],
        leader_closed_usdc=r["leader_closed_usdc"],
        error=r["error"],
        account=r["wallet_address"] or str(r["profile_id"]),  # the paper venue books by profile
        slippage_bps=r["slippage_bps"],
        attempts=r["attempts"],
        created_at=r["created_at"],
    )


async def workable(conn: asyncpg.Connection, ids: list[str]) -> list[Intent]:
    """Fresh states of claimed intents that still need work (read after the lock was taken)."""
    if not ids:
        return []
    rows = await conn.fetch(
        "SELECT i.*, coalesce(c.slippage_bps, 50) AS slippage_bps, p.wallet_address FROM copy_intents i "
        "JOIN copytrader_profiles p ON p.id = i.profile_id "
        "LEFT JOIN leader_follows f ON f.id = i.follow_id LEFT JOIN copy_configurations c ON c.id = f.config_id "
        "WHERE i.intent_id = ANY($1::text[]) AND i.state = ANY($2::text[])",
        ids,
        _OPEN_STATES,
    )
    return [_intent(r) for r in rows]


@dataclass(slots=True)
class PositionIntents:
    """What the journal holds about one follower's copy of one leader position."""

    open_state: IntentState | None = None  # the open intent's state (None: not planned yet)
    busy: set[str] = field(default_factory=set)  # partial closes and TP/SL updates in flight
    closing: bool = False  # the leader's close is planned, in flight or done: it takes everything


async def position_intents(
    conn: asyncpg.Connection, profile_ids: list[int], leader_position_keys: list[str]
) -> dict[tuple[int, str], PositionIntents]:
    """Per (follower, leader position): its open's state, its follow-ups still in flight (a
    close waits for both, so it never overtakes them) and whether its close is planned or done."""
    rows = await conn.fetch(
        "SELECT profile_id, leader_position_key, intent_id, action, state FROM copy_intents "
        "WHERE profile_id = ANY($1::bigint[]) AND leader_position_key = ANY($2::text[]) "
        "AND (action = 'open' OR (action IN ('partial_close', 'update_tp_sl') AND state = ANY($3::text[])) "
        "OR (action = 'close' AND state = ANY($4::text[])))",
        profile_ids,
        leader_position_keys,
        _OPEN_STATES,
        _CLOSING_STATES,
    )
    out: dict[tuple[int, str], PositionIntents] = {}
    for r in rows:
        info = out.setdefault((r["profile_id"], r["leader_position_key"]), PositionIntents())
        if r["action"] == CopyAction.OPEN:
            info.open_state = IntentState(r["state"])
        elif r["action"] == CopyAction.CLOSE:
            info.closing = True
        else:
            info.busy.add(r["intent_id"])
    return out


async def bind(conn: asyncpg.Connection, bound: list[Intent]) -> None:
    """Waiting intents whose open settled: the position they act on and their size."""
    if bound:
        await conn.execute(
            "UPDATE copy_intents i SET position_ref = b.ref, collateral_usdc = b.amount, side = b.side, "
            "updated_at = now() FROM json_to_recordset($1::json) AS b(id text, ref text, amount bigint, side text) "
            "WHERE i.intent_id = b.id",
            as_json(
                {"id": i.intent_id, "ref": i.position_ref, "amount": i.collateral_usdc, "side": i.side}
                for i in bound
            ),
        )


async def touch(conn: asyncpg.Connection, ids: list[str]) -> None:
    """Still waiting: moved to the back of the sweep's queue."""
    if ids:
        await conn.execute(
            "UPDATE copy_intents SET updated_at = now() WHERE intent_id = ANY($1::text[])", ids
        )


async def refuse(conn: asyncpg.Connection, ids: list[str], reason: Refusal) -> None:
    if ids:
        await conn.execute(
            "UPDATE copy_intents SET state = 'refused', refusal_reason = $2, updated_at = now() "
            "WHERE intent_id = ANY($1::text[]) AND state = 'planned'",
            ids,
            reason.value,
        )


async def stop_waiting(conn: asyncpg.Connection, waiting: Intent, tombstone_id: str) -> bool:
    """A close that waited its bound for an open: refused, and its leader position barred from
    copying (a refused open intent takes the position's one open slot). False when an open got
    there first: the close then keeps waiting for it."""
    placed = await conn.fetchval(
        "INSERT INTO copy_intents (intent_id, profile_id, follow_id, leader_address, leader_event_id, action, "
        "state, refusal_reason, pair_index, venue, leader_position_key) "
        "VALUES ($1, $2, $3, $4, $5, 'open', 'refused', $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING 1",
        tombstone_id,
        waiting.profile_id,
        waiting.follow_id,
        waiting.leader,
        f"unseen-open-of:{waiting.leader_event_id}",
        Refusal.OPEN_NOT_SEEN.value,
        waiting.pair_index,
        waiting.venue,
        waiting.leader_position_key,
    )
    if placed is None:
        return False
    await refuse(conn, [waiting.intent_id], Refusal.OPEN_NOT_SEEN)
    return True


async def mark_sent(conn: asyncpg.Connection, ids: list[str]) -> None:
    """Committed before the venue is called; each send counts as an attempt."""
    if ids:
        await conn.execute(
            "UPDATE copy_intents SET state = 'sent', attempts = attempts + 1, updated_at = now() "
            "WHERE intent_id = ANY($1::text[])",
            ids,
        )


async def mark(
    conn: asyncpg.Connection, ids: list[str], state: IntentState, *, error: str | None = None
) -> None:
    if ids:
        await conn.execute(
            "UPDATE copy_intents SET state = $2, error = coalesce($3, error), updated_at = now() "
            "WHERE intent_id = ANY($1::text[])",
            ids,
            state.value,
            error,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the venue said about an intent, as the journal stores it."""

    intent_id: str
    state: IntentState
    fill_price: Decimal | None = None
    fee_usdc: int | None = None
    pnl_usdc: int | None = None
    venue_order_ref: str | None = None
    error: str | None = None


async def settle(
    conn: asyncpg.Connection, outcomes: list[Outcome], waking: list[tuple[int, str]] = ()
) -> list[str]:
    """Store the outcomes; returns the follow-ups of the `waking` (follower, leader position)
    pairs that wait (for an open, or a close for partial closes): what to look at once these are
    booked. One round trip for both."""
    if not outcomes:
        return []
    rows = await conn.fetch(
        """
        WITH settled AS (
            UPDATE copy_intents i SET state = o.state, fill_price = o.price, fee_usdc = o.fee, pnl_usdc = o.pnl,
                venue_order_ref = o.ref, error = coalesce(o.error, i.error), updated_at = now()
            FROM json_to_recordset($1::json) AS o(id text, state text, price numeric, fee bigint, pnl bigint,
                ref text, error text)
            WHERE i.intent_id = o.id
        )
        SELECT intent_id, profile_id, leader_position_key FROM copy_intents
        WHERE state = 'planned' AND action <> 'open' AND position_ref IS NULL
          AND profile_id = ANY($2::bigint[]) AND leader_position_key = ANY($3::text[])
        """,
        as_json(
            {
                "id": o.intent_id,
                "state": o.state,
                "price": o.fill_price,
                "fee": o.fee_usdc,
                "pnl": o.pnl_usdc,
                "ref": o.venue_order_ref,
                "error": o.error,
            }
            for o in outcomes
        ),
        [pid for pid, _ in waking],
        [key for _, key in waking],
    )
    wanted = set(waking)
    return [r["intent_id"] for r in rows if (r["profile_id"], r["leader_position_key"]) in wanted]


async def stale(conn: asyncpg.Connection, venue: str, idle_s: float, limit: int) -> list[str]:
    """Unfinished intents nobody touched for `idle_s`, oldest first (the recovery sweep's work)."""
    rows = await conn.fetch(
        f"SELECT intent_id FROM copy_intents WHERE {_IN_FLIGHT} AND venue = $1 "
        "AND updated_at < now() - make_interval(secs => $2) ORDER BY updated_at LIMIT $3",
        venue,
        idle_s,
        limit,
    )
    return [r["intent_id"] for r in rows]


async def in_flight(conn: asyncpg.Connection, profile_id: int) -> bool:
    """Whether any copy of this profile is still being worked (reconciliation waits for it)."""
    return bool(
        await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM copy_intents WHERE profile_id = $1 AND {_IN_FLIGHT})",
            profile_id,
        )
    )


async def recent(conn: asyncpg.Connection, profile_id: int, limit: int) -> list[asyncpg.Record]:
    """A profile's latest copies and refusals, newest first (the bars a waiting close put on a
    late open are bookkeeping, not copies: left out)."""
    return await conn.fetch(
        "SELECT created_at, leader_address, action, state, pair_index, collateral_usdc, fill_price, pnl_usdc, "
        "coalesce(refusal_reason, error) AS reason FROM copy_intents WHERE profile_id = $1 "
        "AND leader_event_id NOT LIKE 'unseen-open-of:%' ORDER BY created_at DESC, intent_id LIMIT $2",
        profile_id,
        limit,
    )
