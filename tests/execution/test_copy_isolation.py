"""One bad follow, or one order the venue or the books cannot take, fails only its own intent,
with a reason, a bounded number of times; the leader's other followers are copied as if it were
not there.

Seen before the fix: a follow stored with a NaN multiplier made every open of its leader fail for
all followers, retried forever; one with an absurd fixed size filled its open, then every close of
the leader failed with "bigint out of range" and no follower's copy closed. Such values are now
refused where they enter (the service and CHECK constraints); the first test stores them as a
database written before those constraints would hold them."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

from data.events import EventKind
from execution.copy.engine import MAX_ATTEMPTS, CopyEngine, EngineConfig
from execution.copy.follows import add_follow
from execution.copy.model import FollowConfig, SizingMode
from execution.copy.profiles import ensure_profile
from execution.venues.base import VenueOrder, VenueResult
from execution.venues.paper import DictPriceFeed, PaperVenue
from tests.execution.copy_fixtures import BTC, CATALOGUE, LEADER, add_followers, leader_event

pytestmark = pytest.mark.integration


async def legacy_follow(pool: asyncpg.Pool, user: int, config: FollowConfig) -> int:
    """A follow stored before the constraints existed (they are dropped for it)."""
    async with pool.acquire() as conn:
        for (name,) in await conn.fetch(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'copy_configurations'::regclass AND contype = 'c' "
            "AND conname NOT IN ('copy_configurations_sizing_mode_check', 'copy_configurations_side_filter_check')"
        ):
            await conn.execute(f'ALTER TABLE copy_configurations DROP CONSTRAINT "{name}"')
        pid = await ensure_profile(
            conn, telegram_user_id=user, name="legacy", venue="paper", equity_usdc=10**10
        )
        await add_follow(conn, pid, LEADER, config)
        await conn.execute("UPDATE leader_follows SET followed_at = now() - interval '10 seconds'")
    return pid


def open_then_close() -> tuple:
    opened = leader_event(EventKind.OPEN)
    close = leader_event(
        EventKind.CLOSE, n=1, open_ts=opened.open_ts, closed=opened.collateral_usdc, price="61200"
    )
    return opened, close


async def intent_states(pool: asyncpg.Pool) -> dict[tuple[int, str], tuple[str, str | None, str | None]]:
    return {
        (r["profile_id"], r["action"]): (r["state"], r["refusal_reason"], r["error"])
        for r in await pool.fetch("SELECT profile_id, action, state, refusal_reason, error FROM copy_intents")
    }


async def open_copies(pool: asyncpg.Pool, profiles: list[int]) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM copy_positions WHERE status = 'open' AND profile_id = ANY($1::bigint[])",
        profiles,
    )


async def test_a_follow_whose_settings_cannot_be_applied_is_refused_alone(
    migrated_pool: asyncpg.Pool,
) -> None:
    pool = migrated_pool
    good = await add_followers(pool, 10)
    nan = await legacy_follow(pool, 1, FollowConfig(SizingMode.MULTIPLIER, multiplier=Decimal("NaN")))
    huge = await legacy_follow(pool, 2, FollowConfig(SizingMode.FIXED, fixed_collateral_usdc=10**18))
    feed = DictPriceFeed({BTC: Decimal(60_000)})
    venue = PaperVenue(pool, CATALOGUE, feed, spread_bps=0)
    async with CopyEngine(pool, None, venue, feed, CATALOGUE, EngineConfig(max_delay_ms=60_000)) as engine:
        opened, close = open_then_close()
        assert await engine.handle(opened) == {"refused": 2, "filled": 10}
        feed.prices[BTC] = Decimal(61_200)
        assert await engine.handle(close) == {"refused": 2, "filled": 10}
        assert await engine.handle(close) == {"refused": 0}  # redelivered: nothing more happens
    states = await intent_states(pool)
    for pid in good:
        assert states[(pid, "open")][0] == states[(pid, "close")][0] == "filled"
    for pid, setting in (
        (nan, "multiplier is NaN"),
        (huge, "fixed_collateral_usdc 1000000000000000000 is outside"),
    ):
        assert states[(pid, "open")][:2] == ("refused", "invalid_follow_settings")
        assert setting in (states[(pid, "open")][2] or "")
        assert states[(pid, "close")][:2] == ("refused", "no_copied_position")
    assert await open_copies(pool, good) == 0
    refusals = await pool.fetchval("SELECT count(*) FROM notifications WHERE kind = 'refused'")
    assert refusals == 2  # each bad follow told once; no_copied_position is not news


class FaultyVenue(PaperVenue):
    """The paper venue, but one account's orders break it: its close pays out more than a bigint
    holds (the venue's own insert fails in PostgreSQL), or its answer cannot be booked."""

    poison: str = ""
    breaks: str = "venue"  # venue | books

    def _execute(self, order: VenueOrder, book: dict) -> VenueResult:  # type: ignore[type-arg]
        result = super()._execute(order, book)
        if order.account == self.poison and order.action != "open" and self.breaks == "venue":
            return VenueResult(order.client_ref, result.status, result.price, usdc_sent=2**63)
        return result

    async def submit_many(self, orders: list[VenueOrder]) -> list[VenueResult]:
        results = await super().submit_many(orders)
        if self.breaks == "books":
            results = [
                VenueResult(r.client_ref, r.status, r.price, r.collateral_usdc, r.fee_usdc, pnl_usdc=2**63)
                if o.account == self.poison and o.action != "open"
                else r
                for o, r in zip(orders, results, strict=True)
            ]
        return results


@pytest.mark.parametrize("breaks", ["venue", "books"])
async def test_an_order_that_breaks_the_venue_or_the_books_fails_alone(
    migrated_pool: asyncpg.Pool, breaks: str
) -> None:
    pool = migrated_pool
    good = await add_followers(pool, 10)
    (poison,) = await add_followers(pool, 1)
    feed = DictPriceFeed({BTC: Decimal(60_000)})
    venue = FaultyVenue(pool, CATALOGUE, feed, spread_bps=0)
    venue.poison, venue.breaks = str(poison), breaks
    config = EngineConfig(max_delay_ms=60_000, claim_idle_ms=100)
    async with CopyEngine(pool, None, venue, feed, CATALOGUE, config) as engine:
        opened, close = open_then_close()
        assert await engine.handle(opened) == {"refused": 0, "filled": 11}
        feed.prices[BTC] = Decimal(61_200)
        outcome = await engine.handle(close)
        assert outcome["filled"] == 10
        sweeps = 0
        while await pool.fetchval(
            "SELECT count(*) FROM copy_intents WHERE state IN ('planned', 'sent', 'unknown')"
        ):
            await pool.execute("UPDATE copy_intents SET updated_at = now() - interval '1 hour'")
            await engine.recover()
            sweeps += 1
            assert sweeps <= MAX_ATTEMPTS, "retried past its bound"
    states = await intent_states(pool)
    assert all(states[(pid, "close")][0] == "filled" for pid in good)
    assert await open_copies(pool, good) == 0
    state, _, error = states[(poison, "close")]
    assert state == "failed" and "range" in (error or ""), error  # an integer too large to store
    if breaks == "venue":
        # Each attempt was rolled back by the venue: it never executed, and it was tried a bounded
        # number of times (the venue records nothing of a rolled-back request).
        assert sweeps == MAX_ATTEMPTS - 1
        assert await pool.fetchval("SELECT count(*) FROM paper_orders WHERE account = $1", str(poison)) == 1
    else:
        assert "booking failed" in (error or "")  # the venue did it: the operator must look
    notice = await pool.fetchrow(
        "SELECT n.level, n.payload FROM notifications n JOIN copytrader_profiles p ON p.user_id = n.user_id "
        "WHERE p.id = $1 AND n.kind = 'failed'",
        poison,
    )
    assert notice is not None and notice["level"] == "critical"
