"""Alerts for operators: a row per admin in the `notifications` outbox (the bot delivers it),
written with a dedupe key so a repeated alert about the same failure is stored once."""

from __future__ import annotations

import json
import logging

import asyncpg

from infra.logs import log_fields

log = logging.getLogger("vanta.alerts")

ADMIN_ALERT = "admin_alert"


async def alert_admins(
    conn: asyncpg.Connection, *, dedupe_key: str, text: str, payload: dict[str, object]
) -> int:
    """Queue `text` for every admin user; returns how many notifications were written."""
    rows = await conn.fetch(
        "INSERT INTO notifications (user_id, kind, dedupe_key, text, payload) "
        "SELECT id, $1, $2 || ':' || id, $3, $4::jsonb FROM users WHERE is_admin "
        "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        ADMIN_ALERT,
        dedupe_key,
        text,
        json.dumps(payload, default=str),
    )
    if not rows and not await conn.fetchval("SELECT count(*) FROM users WHERE is_admin"):
        log.warning("no admin user to alert (users.is_admin)", extra=log_fields(alert=dedupe_key))
    return len(rows)
