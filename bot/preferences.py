"""What the bot keeps per user and profile in its own tables: the notification level
(`bot_user_settings`: which notices the delivery worker sends) and the copy settings /copytrader
asked for a profile (`bot_profile_settings`).

Levels come from the copy engine's notices (info < fill < warning < critical); a notice below the
user's level is marked `skipped`, not sent."""

from __future__ import annotations

import json

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


async def copy_settings(pool: asyncpg.Pool, profile_id: int) -> dict[str, object] | None:
    """The copy settings /copytrader stored for a profile (`bot_profile_settings`), or None.
    The caller has checked through the copy service that the profile is the user's."""
    raw = await pool.fetchval("SELECT settings FROM bot_profile_settings WHERE profile_id = $1", profile_id)
    return None if raw is None else json.loads(raw)


async def set_copy_settings(
    pool: asyncpg.Pool, profile_id: int, telegram_user_id: int, settings: dict[str, object]
) -> None:
    await pool.execute(
        "INSERT INTO bot_profile_settings (profile_id, telegram_user_id, settings) VALUES ($1, $2, $3::jsonb) "
        "ON CONFLICT (profile_id) DO UPDATE SET settings = EXCLUDED.settings, updated_at = now()",
        profile_id,
        telegram_user_id,
        json.dumps(settings),
    )
