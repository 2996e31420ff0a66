"""`vanta db check`, the data side: stored events that have not reached the stream.

Every ingest command queues what it stores on `event_outbox` and sweeps it onto the stream; rows
left there mean a publish failed (Redis down, a crash) and no ingest has run since. Rows younger
than `GRACE_S` belong to an ingest that is still publishing and are not a failure.
"""

from __future__ import annotations

from typing import Any

import asyncpg

GRACE_S = 60


async def run(conn: asyncpg.Connection) -> dict[str, Any]:
    rows = await conn.fetch(
        """SELECT stream, count(*) AS n, min(enqueued_at) AS oldest, min(event_id) AS example,
                  count(*) FILTER (WHERE enqueued_at < now() - make_interval(secs => $1)) AS stale
           FROM event_outbox GROUP BY stream ORDER BY stream""",
        GRACE_S,
    )
    return {
        "name": "unpublished_events",
        "ok": not any(r["stale"] for r in rows),
        "count": sum(int(r["n"]) for r in rows),
        "detail": [
            f"{r['n']} stored events not yet on stream {r['stream']!r} since {r['oldest']:%Y-%m-%d %H:%M:%S}Z "
            f"(e.g. {r['example']}); any `vanta ingest` publishes them"
            for r in rows
        ],
    }
