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


class NoticeKind(StrEnum):
    FILL = "fill"  # a copy filled: an open, a (partial) close, a TP/SL move
    REFUSED = "refused"  # a copy not placed, with its reason
    REJECTED = "rejected"  # the venue refused a copy
    PAUSED = "paused"  # a limit paused the profile (daily loss, drawdown)
    DRIFT = "drift"  # the venue and the journal differ (reconciliation)
    FAILED = "failed"  # a copy could not be worked or booked: someone has to look
    UNMATCHED_CLOSE = "unmatched_close"  # the leader closed a position whose open never reached us


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


_PLAIN = (bool, int, str)


def _jsonable(value: Any) -> Any:
    return value if value is None or value.__class__ in _PLAIN else str(value)


_WRITE = """
INSERT INTO notifications (user_id, kind, level, dedupe_key, payload)
SELECT p.user_id, n.kind, n.level, n.key, n.payload::jsonb
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[]) AS n(profile_id, kind, level, key, payload)
JOIN copytrader_profiles p ON p.id = n.profile_id
ON CONFLICT (dedupe_key) DO NOTHING
"""


async def write(conn: asyncpg.Connection, notices: list[Notice]) -> None:
    if not notices:
        return
    await conn.execute(
        _WRITE,
        [n.profile_id for n in notices],
        [n.kind.value for n in notices],
        [LEVELS[n.kind].value for n in notices],
        [n.dedupe_key for n in notices],
        [json.dumps({k: _jsonable(v) for k, v in n.fields.items()}) for n in notices],
    )


@dataclass(frozen=True, slots=True)
class StoredNotice:
    id: int
    kind: NoticeKind
    level: Level
    fields: dict[str, Any]
    created_at: Any
    status: str


async def recent(conn: asyncpg.Connection, user_id: int, limit: int) -> list[StoredNotice]:
    """A user's latest notifications, newest first (`user_id` is `users.id`)."""
    rows = await conn.fetch(
        "SELECT id, kind, level, payload, created_at, status FROM notifications WHERE user_id = $1 "
        "ORDER BY created_at DESC, id DESC LIMIT $2",
        user_id,
        limit,
    )
    return [
        StoredNotice(
            r["id"],
            NoticeKind(r["kind"]),
            Level(r["level"]),
            json.loads(r["payload"]),
            r["created_at"],
            r["status"],
        )
        for r in rows
    ]
