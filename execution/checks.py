"""The execution side's integrity check, run by `vanta db check` with every other `vanta.check`
entry point: copies left open although their leader's position is closed.

A copy is only reported once no engine could still be closing it: the leader's close was stored
more than `grace_s` ago and no intent of that follower for that position is in flight. Any copy
reported is money at risk: the follower holds a position the leader has left.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from execution.copy import positions

GRACE_S = 60.0
DETAIL_LIMIT = 100


async def run(conn: asyncpg.Connection, grace_s: float = GRACE_S) -> dict[str, Any]:
    rows = await positions.open_with_leader_closed(conn, grace_s)
    return {
        "name": "copies_left_open",
        "ok": not rows,
        "count": len(rows),
        "detail": [
            {
                "copy_id": r["id"],
                "profile_id": r["profile_id"],
                "leader": r["leader_address"],
                "leader_position_key": r["leader_position_key"],
                "leader_closed_by": r["leader_closed_by"],
                "leader_closed_at": r["leader_closed_at"].isoformat(),
                "leader_event_id": r["leader_event_id"],
            }
            for r in rows[:DETAIL_LIMIT]
        ],
    }
