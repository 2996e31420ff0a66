"""The execution journal (`copy_intents`): written before anything is sent, claimed by one
process at a time, resolved by asking the venue.

- `intent_id(follower, leader event, action)` is deterministic, and the primary key: a second
  plan of the same copy inserts nothing and the first plan's size is what gets sent.
- A process works an intent only while it holds the intent's session advisory lock; the lock
  dies with the process (SIGKILL included), so another engine can take over at once, and two
  engines never send the same intent concurrently.
- An intent is marked `sent` (committed) before the venue is called. Found later in `sent` or
  `unknown`, its outcome is looked up at the venue by the intent id; only if the venue has no
  record of it is it sent — a lookup, never a blind resend.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from execution.copy.model import CopyAction, Refusal

OPEN_STATES = ("planned", "sent", "unknown")


def intent_id(profile_id: int, leader_event_id: str, action: CopyAction | str) -> str:
    return hashlib.sha256(f"{profile_id}|{leader_event_id}|{action}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Intent:
    intent_id: str
    profile_id: int
    follow_id: int
    leader: str
    leader_event_id: str
    action: CopyAction
    venue: str
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

    @property
    def state(self) -> str:
        return "refused" if self.refusal else "planned"


_COLUMNS = (
    "intent_id, profile_id, follow_id, leader_address, leader_event_id, action, state, refusal_reason, "
    "pair_index, side, collateral_usdc, leverage, requested_price, venue, position_ref, "
    "leader_position_key, tp, sl, leader_collateral_usdc, leader_closed_usdc"
)
_TYPES = (
    "text[], bigint[], bigint[], text[], text[], text[], text[], text[], integer[], text[], bigint[], "
    "numeric[], numeric[], text[], text[], text[], numeric[], numeric[], bigint[], bigint[]"
)


async def plan(conn: asyncpg.Connection, intents: list[Intent]) -> list[str]:
    """Write intents (planned or refused) in one statement; returns the ids that were new."""
    if not intents:
        return []
    columns = list(
        zip(
            *[
                (
                    i.intent_id,
                    i.profile_id,
                    i.follow_id,
                    i.leader,
                    i.leader_event_id,
                    i.action.value,
                    i.state,
                    i.refusal.value if i.refusal else None,
                    i.pair_index,
                    i.side,
                    i.collateral_usdc,
                    i.leverage,
                    i.requested_price,
                    i.venue,
                    i.position_ref,
                    i.leader_position_key,
                    i.tp,
                    i.sl,
                    i.leader_collateral_usdc,
                    i.leader_closed_usdc,
                )
                for i in intents
            ],
            strict=True,
        )
    )
    n = len(columns)
    placeholders = ", ".join(f"${k + 1}::{t.strip()}" for k, t in enumerate(_TYPES.split(",")))
    assert n == len(_TYPES.split(","))
    rows = await conn.fetch(
        f"INSERT INTO copy_intents ({_COLUMNS}) SELECT * FROM unnest({placeholders}) "
        "ON CONFLICT DO NOTHING RETURNING intent_id",
        *[list(c) for c in columns],
    )
    return [r["intent_id"] for r in rows]


async def claim(lock_conn: asyncpg.Connection, ids: list[str]) -> list[str]:
    """The ids whose advisory lock this session got (others are being worked elsewhere)."""
    rows = await lock_conn.fetch(
        "SELECT id FROM unnest($1::text[]) AS t(id) WHERE pg_try_advisory_lock(hashtextextended(id, 7))", ids
    )
    return [r["id"] for r in rows]


async def release(lock_conn: asyncpg.Connection, ids: list[str]) -> None:
    if ids:
        await lock_conn.execute(
            "SELECT pg_advisory_unlock(hashtextextended(id, 7)) FROM unnest($1::text[]) AS t(id)", ids
        )


async def workable(conn: asyncpg.Connection, ids: list[str]) -> list[asyncpg.Record]:
    """Fresh states of claimed intents that still need work (read after the lock was taken)."""
    return await conn.fetch(
        "SELECT i.*, coalesce(c.slippage_bps, 50) AS slippage_bps, p.wallet_address FROM copy_intents i "
        "JOIN copytrader_profiles p ON p.id = i.profile_id "
        "LEFT JOIN leader_follows f ON f.id = i.follow_id LEFT JOIN copy_configurations c ON c.id = f.config_id "
        "WHERE i.intent_id = ANY($1::text[]) AND i.state = ANY($2::text[])",
        ids,
        list(OPEN_STATES),
    )


async def opens_in_flight(
    conn: asyncpg.Connection, profile_ids: list[int], leader_position_keys: list[str]
) -> set[tuple[int, str]]:
    """(profile, leader position) pairs whose copy of the open is planned, sent or unknown."""
    rows = await conn.fetch(
        "SELECT profile_id, leader_position_key FROM copy_intents WHERE action = 'open' "
        "AND state = ANY($3::text[]) AND profile_id = ANY($1::bigint[]) AND leader_position_key = ANY($2::text[])",
        profile_ids,
        leader_position_keys,
        list(OPEN_STATES),
    )
    return {(r["profile_id"], r["leader_position_key"]) for r in rows}


async def mark(conn: asyncpg.Connection, ids: list[str], state: str, *, error: str | None = None) -> None:
    if ids:
        await conn.execute(
            "UPDATE copy_intents SET state = $2, error = coalesce($3, error), updated_at = now() "
            "WHERE intent_id = ANY($1::text[])",
            ids,
            state,
            error,
        )
