"""The follower's books (`positions.py`): the trading day is the UTC day, whatever time zone the
database server or a session runs in, so the daily-loss limit counts exactly the UTC day's losses."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import asyncpg
import pytest

from data.events import EventKind
from execution.copy import positions
from execution.copy.engine import CopyEngine, EngineConfig
from execution.copy.model import FollowConfig, SizingMode
from execution.venues.paper import DictPriceFeed, PaperVenue
from infra import db
from tests.execution.copy_fixtures import BTC, CATALOGUE, add_followers, leader_event

pytestmark = pytest.mark.integration
LOCAL = "Pacific/Kiritimati"  # UTC+14: its day starts at 10:00 UTC the day before


async def closed_loss(pool: asyncpg.Pool, profile: int, n: int, pnl: int, at: object) -> None:
    """A close the engine booked at `at` (its settlement time) with realized `pnl`."""
    await pool.execute(
        "INSERT INTO copy_intents (intent_id, profile_id, leader_address, leader_event_id, action, state, venue, "
        "pnl_usdc, updated_at) VALUES ($1, $2, 'x', $3, 'close', 'filled', 'paper', $4, $5)",
        f"loss-{n}",
        profile,
        f"e-{n}",
        pnl,
        at,
    )


async def test_daily_loss_counts_the_utc_day_in_any_session_time_zone(empty_db_url: str) -> None:
    name = urlsplit(empty_db_url).path.lstrip("/")
    admin = await asyncpg.connect(empty_db_url)
    await admin.execute(f"ALTER DATABASE \"{name}\" SET timezone TO '{LOCAL}'")
    await db.migrate(admin)
    await admin.close()
    pool = await db.create_pool(empty_db_url)
    try:
        config = FollowConfig(SizingMode.FIXED, fixed_collateral_usdc=100_000_000)
        (pid,) = await add_followers(pool, 1, config)
        await pool.execute(
            "UPDATE copytrader_profiles SET daily_loss_limit_usdc = 100000000 WHERE id = $1", pid
        )
        day = positions.trading_day_start()
        await closed_loss(pool, pid, 1, -80_000_000, day - timedelta(minutes=30))  # yesterday, UTC
        await closed_loss(pool, pid, 2, -60_000_000, day + timedelta(seconds=1))  # today, UTC

        # Sessions of the pool are pinned to UTC; one left in the local zone counts the same.
        local = await asyncpg.connect(empty_db_url, server_settings={"TimeZone": LOCAL})
        try:
            assert await local.fetchval("SHOW timezone") == LOCAL
            assert await positions.realized_since(local, [pid], day) == {pid: -60_000_000}
        finally:
            await local.close()
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW timezone") == "UTC"
            assert await positions.realized_since(conn, [pid], day) == {pid: -60_000_000}

        feed = DictPriceFeed({BTC: Decimal(60_000)})
        venue = PaperVenue(pool, CATALOGUE, feed)
        async with CopyEngine(
            pool, None, venue, feed, CATALOGUE, EngineConfig(max_delay_ms=60_000)
        ) as engine:
            # 60 of 100 USDC lost today: still copying (yesterday's 80 do not count).
            assert (await engine.handle(leader_event(EventKind.OPEN, n=1, trade_index=1)))["filled"] == 1
            await closed_loss(pool, pid, 3, -40_000_000, day + timedelta(seconds=2))
            refused = await engine.handle(leader_event(EventKind.OPEN, n=2, trade_index=2))
        assert refused == {"refused": 1}
        reason = await pool.fetchval(
            "SELECT refusal_reason FROM copy_intents WHERE state = 'refused' AND profile_id = $1", pid
        )
        assert reason == "daily_loss_limit"
    finally:
        await pool.close()


def test_the_trading_day_is_the_utc_day() -> None:
    from datetime import datetime, timezone

    tokyo_morning = datetime(2026, 3, 2, 8, 30, tzinfo=timezone(timedelta(hours=9)))  # 23:30 UTC on the 1st
    assert positions.trading_day_start(tokyo_morning).isoformat() == "2026-03-01T00:00:00+00:00"
    assert positions.trading_day(tokyo_morning).isoformat() == "2026-03-01"
