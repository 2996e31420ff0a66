"""The delivery side of the `notifications` outbox: named queries for the claim/mark protocol.

    pending ──claim──> sending ──mark_sent──> sent
       ^                  │ 429 or not connected: release (back to pending, not before retry_after)
       └──────────────────┘ 403/400: failed        timeout after the request left: unknown
    a crash leaves `sending`: recover() turns it into `unknown` (never resent: at most once)

Telegram's sendMessage is not idempotent and the Bot API cannot tell whether a message arrived,
so a notice whose send may have reached Telegram is never sent again: a duplicate fill alert
would read as a second trade. Instead such a notice is kept as `unknown` and the user gets one
message saying a notice may be missing. The window is one HTTP round trip per message in flight
(the claim is committed right before the send and the mark right after), so it is rare, and it
is never silent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

DELIVERY_GAP = "delivery_gap"  # the bot's own kind: "a notice may not have reached you"


@dataclass(frozen=True)
class Notice:
    """A notice as the engine stored it (a kind, its fields, a level), with who receives it."""

    id: int
    user_id: int
    chat_id: int | None  # the user's Telegram id; None when the user has no Telegram account
    kind: str
    level: str
    fields: dict[str, Any]
    created_at: datetime
    notify_level: str = "info"  # the lowest level this user wants (`bot_user_settings`)


def _notice(r: asyncpg.Record) -> Notice:
    payload = r["payload"]
    return Notice(
        id=r["id"],
        user_id=r["user_id"],
        chat_id=r["chat_id"],
        kind=r["kind"],
        level=r["level"],
        fields=json.loads(payload) if isinstance(payload, str) else dict(payload or {}),
        created_at=r["created_at"],
        notify_level=r["notify_level"] or "info",
    )


_COLUMNS = (
    "n.id, n.user_id, u.telegram_user_id AS chat_id, n.kind, n.level, n.payload, n.created_at, s.notify_level"
)
_PENDING = f"""
SELECT {_COLUMNS}
FROM notifications n JOIN users u ON u.id = n.user_id
LEFT JOIN bot_user_settings s ON s.telegram_user_id = u.telegram_user_id
WHERE n.status = 'pending' AND (n.not_before IS NULL OR n.not_before <= now())
  AND (u.telegram_user_id IS NULL OR NOT (u.telegram_user_id = ANY($2::bigint[])))
  AND ($3::bigint[] IS NULL OR u.telegram_user_id = ANY($3::bigint[]))
  -- a notice held back by a 429 holds back the later ones of its user: order is kept
  AND NOT EXISTS (SELECT 1 FROM notifications h WHERE h.user_id = n.user_id AND h.status = 'pending'
                  AND h.not_before > now() AND h.id < n.id)
ORDER BY n.id
LIMIT $1
"""


async def pending(
    conn: asyncpg.Pool | asyncpg.Connection,
    limit: int,
    busy_chats: list[int],
    only_chats: list[int] | None = None,
) -> list[Notice]:
    """The oldest notices due, leaving out chats a sender is already working on (and, when
    `only_chats` is given, every chat not in it)."""
    return [_notice(r) for r in await conn.fetch(_PENDING, limit, busy_chats, only_chats)]


async def claim(conn: asyncpg.Pool | asyncpg.Connection, notice_id: int, worker: str) -> bool:
    """Record the intent to send (committed before the send). False if someone else has it."""
    row = await conn.fetchval(
        "UPDATE notifications SET status = 'sending', claimed_by = $2, claimed_at = now(), "
        "attempts = attempts + 1 WHERE id = $1 AND status = 'pending' RETURNING id",
        notice_id,
        worker,
    )
    return row is not None


async def mark_sent(
    conn: asyncpg.Pool | asyncpg.Connection, notice_id: int, worker: str, message_id: int
) -> None:
    await conn.execute(
        "UPDATE notifications SET status = 'sent', sent_at = now(), telegram_message_id = $3, error = NULL "
        "WHERE id = $1 AND claimed_by = $2",
        notice_id,
        worker,
        message_id,
    )


async def release(
    conn: asyncpg.Pool | asyncpg.Connection, notice_id: int, worker: str, retry_in_s: float, error: str
) -> None:
    """Telegram did not take the message (429, not connected): pending again, later."""
    await conn.execute(
        "UPDATE notifications SET status = 'pending', claimed_by = NULL, error = $4, "
        "not_before = now() + make_interval(secs => $3) WHERE id = $1 AND claimed_by = $2",
        notice_id,
        worker,
        retry_in_s,
        error,
    )


async def settle(conn: asyncpg.Pool | asyncpg.Connection, notice_id: int, status: str, error: str) -> None:
    """A final state other than sent: failed, unknown or skipped, with the reason."""
    assert status in ("failed", "unknown", "skipped")
    await conn.execute(
        "UPDATE notifications SET status = $2, error = $3 WHERE id = $1", notice_id, status, error
    )


async def fail_chat(conn: asyncpg.Pool | asyncpg.Connection, chat_id: int, error: str) -> int:
    """Every pending notice of a chat that refuses messages (the user blocked the bot)."""
    done = await conn.execute(
        "UPDATE notifications n SET status = 'failed', error = $2 FROM users u "
        "WHERE u.id = n.user_id AND u.telegram_user_id = $1 AND n.status = 'pending'",
        chat_id,
        error,
    )
    return int(done.split()[-1])


async def recover(conn: asyncpg.Connection, worker: str) -> list[Notice]:
    """After a crash: notices left `sending` by another worker run become `unknown` (they may have
    arrived), and each of their users gets one notice saying so. Returns the notices concerned."""
    async with conn.transaction():
        rows = await conn.fetch(
            """
            WITH lost AS (
                UPDATE notifications SET status = 'unknown',
                    error = 'the sender stopped during the send: it may or may not have arrived'
                WHERE status = 'sending' AND claimed_by IS DISTINCT FROM $1
                RETURNING *
            )
            SELECT n.id, n.user_id, u.telegram_user_id AS chat_id, n.kind, n.level, n.payload, n.created_at,
                   s.notify_level
            FROM lost n JOIN users u ON u.id = n.user_id
            LEFT JOIN bot_user_settings s ON s.telegram_user_id = u.telegram_user_id
            ORDER BY n.id
            """,
            worker,
        )
        lost = [_notice(r) for r in rows]
        by_user: dict[int, list[Notice]] = {}
        for n in lost:
            by_user.setdefault(n.user_id, []).append(n)
        for user_id, notices in by_user.items():
            ids = [n.id for n in notices]
            # The gap notice carries the lost notices themselves (the first few), so the user
            # reads what they may have missed; it is delivered like any other notice.
            fields = {
                "notice_ids": ids,
                "lost": [{"kind": n.kind, "fields": n.fields} for n in notices[:3]],
                "count": len(notices),
            }
            await conn.execute(
                "INSERT INTO notifications (user_id, kind, level, dedupe_key, payload) "
                "VALUES ($1, $2, 'warning', $3, $4::jsonb) ON CONFLICT (dedupe_key) DO NOTHING",
                user_id,
                DELIVERY_GAP,
                f"gap:{ids[0]}:{ids[-1]}",
                json.dumps(fields),
            )
    return lost


async def backlog(conn: asyncpg.Pool | asyncpg.Connection) -> dict[str, int]:
    """Notices by delivery status over the last day, and the age of the oldest pending one (s)."""
    rows = await conn.fetch(
        "SELECT status, count(*) AS n FROM notifications WHERE created_at > now() - interval '1 day' GROUP BY status"
    )
    counts = {r["status"]: int(r["n"]) for r in rows}
    oldest = await conn.fetchval(
        "SELECT extract(epoch FROM now() - min(created_at))::bigint FROM notifications WHERE status = 'pending'"
    )
    counts["oldest_pending_s"] = int(oldest or 0)
    return counts
