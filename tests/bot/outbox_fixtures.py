"""Builders for the delivery tests: Telegram users and notices in the outbox, in the shape the copy
engine writes them (a kind, its fields, a level)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

LEADER = "0x" + "ab" * 20


async def telegram_users(pool: asyncpg.Pool, telegram_ids: list[int]) -> dict[int, int]:
    """Users with these Telegram ids; returns telegram id -> users.id."""
    rows = await pool.fetch(
        "INSERT INTO users (telegram_user_id) SELECT unnest($1::bigint[]) "
        "ON CONFLICT (telegram_user_id) DO UPDATE SET username = users.username RETURNING id, telegram_user_id",
        telegram_ids,
    )
    return {r["telegram_user_id"]: r["id"] for r in rows}


def fill(n: int) -> dict[str, Any]:
    """The fields of an open's fill notice; `n` micro-USDC of collateral makes each one unique."""
    return {
        "intent_id": f"i{n}",
        "action": "open",
        "leader": LEADER,
        "pair": "BTC/USD",
        "side": "long",
        "collateral_usdc": 100_000_000 + n,
        "leverage": "10",
        "price": "60000",
    }


async def add_notices(
    pool: asyncpg.Pool, notices: list[tuple[int, dict[str, Any]]], kind: str = "fill", level: str = "fill"
) -> list[int]:
    """(users.id, fields) pairs written to the outbox in this order; their ids."""
    ids = []
    async with pool.acquire() as conn, conn.transaction():
        for k, (user_id, fields) in enumerate(notices):
            ids.append(
                await conn.fetchval(
                    "INSERT INTO notifications (user_id, kind, level, dedupe_key, payload) "
                    "VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING id",
                    user_id,
                    kind,
                    level,
                    f"test:{user_id}:{k}:{fields.get('intent_id', k)}",
                    json.dumps(fields),
                )
            )
    return ids
