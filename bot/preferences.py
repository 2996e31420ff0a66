"""A user's notification level (`bot_user_settings`): which notices the delivery worker sends them.

Levels come from the copy engine's notices (info < fill < warning < critical); a notice below the
user's level is marked `skipped`, not sent."""

from __future__ import annotations

import asyncpg

LEVELS = ("info", "fill", "warning", "critical")
DEFAULT_LEVEL = "info"


def rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else 0


def wanted(level: str, notify_level: str) -> bool:
    return rank(level) >= rank(notify_level)


async def notify_level(pool: asyncpg.Pool, telegram_user_id: int) -> str:
    level = await pool.fetchval(
        "SELECT notify_level FROM bot_user_settings WHERE telegram_user_id = $1", telegram_user_id
    )
    return level or DEFAULT_LEVEL


async def set_notify_level(pool: asyncpg.Pool, telegram_user_id: int, level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"unknown notification level {level!r}")
    await pool.execute(
        "INSERT INTO bot_user_settings (telegram_user_id, notify_level) VALUES ($1, $2) "
        "ON CONFLICT (telegram_user_id) DO UPDATE SET notify_level = EXCLUDED.notify_level, updated_at = now()",
        telegram_user_id,
        level,
    )
