"""Notifications as data: what happened to a follower's copies, stored as a kind and its fields
(JSON) in the `notifications` outbox, in the same transaction as the cause. Whoever delivers
them (the CLI now, the Telegram bot next) renders them (`render.py`): the engine writes no
sentences, so a reader can word, localize, format or chart them as it likes, and choose by level.

Each notice has a dedupe key: written twice (a replayed fan-out, a repeated reconciliation), it is
stored once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncpg

from execution.rows import as_json


class NoticeKind(StrEnum):
    FILL = "fill"  # a copy filled: an open, a (partial) close, a TP/SL move
    REFUSED = "refused"  # a copy not placed, with its reason
    REJECTED = "rejected"  # the venue refused a copy
    PAUSED = "paused"  # a limit paused the profile (daily loss, drawdown)
    DRIFT = "drift"  # the venue and the journal differ (reconciliation)
    FAILED = "failed"  # a copy could not be worked or booked: someone has to look
    UNMATCHED_CLOSE = "unmatched_close"  # the leader closed a position whose open never reached us
    ADMIN_ALERT = "admin_alert"  # for operators: a scheduled job failed (serving.alerts writes it)


class Level(StrEnum):
    INFO = "info"
    FILL = "fill"
    WARNING = "warning"
    CRITICAL = "critical"


LEVELS: dict[NoticeKind, Level] = {
    NoticeKind.FILL: Level.FILL,
    NoticeKind.REFUSED: Level.INFO,
    NoticeKind.REJECTED: Level.WARNING,
    NoticeKind.PAUSED: Level.CRITICAL,
    NoticeKind.DRIFT: Level.WARNING,
    NoticeKind.FAILED: Level.CRITICAL,
    NoticeKind.UNMATCHED_CLOSE: Level.WARNING,
    NoticeKind.ADMIN_ALERT: Level.CRITICAL,
}


@dataclass(frozen=True, slots=True)
class Notice:
    """For the user owning `profile_id`. Money in `fields` is integer micro-USDC, prices and
    leverage decimal strings: exact, and the renderer's to format."""

    profile_id: int
    kind: NoticeKind
    dedupe_key: str
    fields: dict[str, Any] = field(default_factory=dict)


def for_intent(profile_id: int, intent_id: str, kind: NoticeKind, **fields: Any) -> Notice:
    """A notice about one copy, once per (intent, kind)."""
    return Notice(profile_id, kind, f"{intent_id}:{kind.value}", {"intent_id": intent_id, **fields})


_WRITE = """
INSERT INTO notifications (user_id, kind, level, dedupe_key, payload)
SELECT p.user_id, n.kind, n.level, n.key, n.fields
FROM json_to_recordset($1::json) AS n(profile_id bigint, kind text, level text, key text, fields jsonb)
JOIN copytrader_profiles p ON p.id = n.profile_id
ON CONFLICT (dedupe_key) DO NOTHING
"""


async def write(conn: asyncpg.Connection, notices: list[Notice]) -> None:
    if not notices:
        return
    await conn.execute(
        _WRITE,
        as_json(
            {
                "profile_id": n.profile_id,
                "kind": n.kind,
                "level": LEVELS[n.kind],
                "key": n.dedupe_key,
                "fields": n.fields,
            }
            for n in notices
        ),
    )


@dataclass(frozen=True, slots=True)
class StoredNotice:
    id: int
    kind: NoticeKind
    level: Level
    fields: dict[str, Any]
    created_at: Any
    status: str
    telegram_user_id: int | None = None


def _stored(r: asyncpg.Record) -> StoredNotice:
    return StoredNotice(
        r["id"],
        NoticeKind(r["kind"]),
        Level(r["level"]),
        json.loads(r["payload"]),
        r["created_at"],
        r["status"],
        r.get("telegram_user_id"),
    )


async def recent(conn: asyncpg.Connection, user_id: int, limit: int) -> list[StoredNotice]:
    """A user's latest notifications, newest first (`user_id` is `users.id`)."""
    rows = await conn.fetch(
        "SELECT id, kind, level, payload, created_at, status FROM notifications WHERE user_id = $1 "
        "ORDER BY created_at DESC, id DESC LIMIT $2",
        user_id,
        limit,
    )
    return [_stored(r) for r in rows]


async def pending(
    conn: asyncpg.Connection, limit: int, levels: list[Level] | None = None
) -> list[StoredNotice]:
    """Notifications not delivered yet, oldest first, with their Telegram recipient (what the
    bot sends next); only some levels if asked."""
    rows = await conn.fetch(
        "SELECT n.id, n.kind, n.level, n.payload, n.created_at, n.status, u.telegram_user_id "
        "FROM notifications n JOIN users u ON u.id = n.user_id WHERE n.status = 'pending' "
        "AND ($2::text[] IS NULL OR n.level = ANY($2::text[])) ORDER BY n.created_at, n.id LIMIT $1",
        limit,
        [lv.value for lv in levels] if levels else None,
    )
    return [_stored(r) for r in rows]


async def mark(conn: asyncpg.Connection, ids: list[int], delivered: bool) -> None:
    """After a delivery attempt: `sent`, or one more attempt counted (`failed` after five)."""
    if not ids:
        return
    if delivered:
        await conn.execute(
            "UPDATE notifications SET status = 'sent', sent_at = now(), attempts = attempts + 1 "
            "WHERE id = ANY($1::bigint[])",
            ids,
        )
    else:
        await conn.execute(
            "UPDATE notifications SET attempts = attempts + 1, "
            "status = CASE WHEN attempts + 1 >= 5 THEN 'failed' ELSE status END WHERE id = ANY($1::bigint[])",
            ids,
        )
