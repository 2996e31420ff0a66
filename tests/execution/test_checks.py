"""The execution side's integrity check (`vanta.check` entry point `copies`): a copy left open
after its leader's position closed is reported, with what `vanta db check` prints; once the
engine has mirrored the close, it is not."""

from __future__ import annotations

import json
from decimal import Decimal
from importlib.metadata import entry_points

import asyncpg
import pytest

from data.events import EventKind
from data.store import insert_events
from execution.checks import run
from execution.copy.engine import CopyEngine, EngineConfig
from execution.venues.paper import DictPriceFeed, PaperVenue
from tests.execution.copy_fixtures import BTC, CATALOGUE, LEADER, add_followers, leader_event

pytestmark = pytest.mark.integration


def test_the_check_is_registered_for_vanta_db_check() -> None:
    (ep,) = [e for e in entry_points(group="vanta.check") if e.name == "copies"]
    assert ep.load() is run


async def test_copies_left_open_after_their_leader_closed_are_reported(migrated_pool: asyncpg.Pool) -> None:
    pool = migrated_pool
    (pid,) = await add_followers(pool, 1)
    feed = DictPriceFeed({BTC: Decimal(60_000)})
    venue = PaperVenue(pool, CATALOGUE, feed, spread_bps=0)
    opened = leader_event(EventKind.OPEN)
    close = leader_event(EventKind.CLOSE, n=1, open_ts=opened.open_ts, closed=opened.collateral_usdc)
    async with CopyEngine(pool, None, venue, feed, CATALOGUE, EngineConfig(max_delay_ms=60_000)) as engine:
        await engine.handle(opened)
        async with pool.acquire() as conn:
            await insert_events(conn, [opened, close])
            assert (await run(conn))["ok"]  # the close was stored a moment ago: the engine may be on it
            await conn.execute("UPDATE trade_events SET inserted_at = now() - interval '5 minutes'")
            found = await run(conn)
        assert (found["name"], found["ok"], found["count"]) == ("copies_left_open", False, 1)
        (detail,) = found["detail"]
        assert (detail["profile_id"], detail["leader"], detail["leader_position_key"]) == (
            pid,
            LEADER,
            opened.position_key,
        )
        assert detail["leader_closed_by"] == "close" and json.dumps(found)  # plain JSON for the command
        await engine.handle(close)
    async with pool.acquire() as conn:
        assert await run(conn) == {"name": "copies_left_open", "ok": True, "count": 0, "detail": []}
