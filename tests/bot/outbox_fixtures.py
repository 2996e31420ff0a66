"""Builders for the delivery tests: Telegram users and notices in the outbox."""

from __future__ import annotations

import json

import asyncpg


async def telegram_users(pool: asyncpg.Pool, telegram_ids: list[int]) -> dict[int, int]:
    """Users with these Telegram ids; returns telegram id -> users.id."""
    rows = await pool.fetch(
        "INSERT INTO users (telegram_user_id) SELECT unnest($1::bigint[]) "
        "ON CONFLICT (telegram_user_id) DO UPDATE SET username = users.username RETURNING id, telegram_user_id",
        telegram_ids,
    )
    return {r["telegram_user_id"]: r["id"] for r in rows}


async def add_notices(pool: asyncpg.Pool, notices: list[tuple[int, str]], kind: str = "fill") -> list[int]:
    """(users.id, text) pairs written to the outbox in this order; their ids."""
    rows = await pool.fetch(
        "INSERT INTO notifications (user_id, kind, dedupe_key, text, payload) "
        "SELECT u, $3, 'test:' || t, t, $4::jsonb FROM unnest($1::bigint[], $2::text[]) AS x(u, t) RETURNING id",
        [u for u, _ in notices],
        [t for _, t in notices],
        kind,
        json.dumps({}),
    )
    return [r["id"] for r in rows]
