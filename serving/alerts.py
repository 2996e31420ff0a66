"""Alerts for operators: a row per admin in the `notifications` outbox (the bot delivers it),
written with a dedupe key so a repeated alert about the same failure is stored once."""

from __future__ import annotations

import json
import logging

import asyncpg

from infra.logs import log_fields

log = logging.getLogger("vanta.alerts")

ADMIN_ALERT = "admin_alert"


async def alert_admins(conn: asyncpg.Connection, *, dedupe_key: str, fields: dict[str, object]) -> int:
    """Queue an `admin_alert` (level critical) with `fields` for every admin user; returns how many
    notifications were written. Notifications are data: the reader words them
    (`execution.copy.render`: "<job> failed at <at>: <error>. ... keeps serving <serving>.")."""
    rows = await conn.fetch(
        "INSERT INTO notifications (user_id, kind, level, dedupe_key, payload) "
        "SELECT id, $1, 'critical', $2 || ':' || id, $3::jsonb FROM users WHERE is_admin "
        "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        ADMIN_ALERT,
        dedupe_key,
        json.dumps(fields, default=str),
    )
    if not rows and not await conn.fetchval("SELECT count(*) FROM users WHERE is_admin"):
        log.warning("no admin user to alert (users.is_admin)", extra=log_fields(alert=dedupe_key))
    return len(rows)
