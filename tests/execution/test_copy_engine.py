"""The copy engine in process against real PostgreSQL and the paper venue: opens, partial and
full closes mirrored in proportion, a second delivery of an event sends nothing, refusals and
fills land in the journal and the notifications outbox, PnL is attributed per leader."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

from data.events import EventKind
from execution.copy.engine import CopyEngine, EngineConfig
from execution.copy.model import FollowConfig, SizingMode
from execution.copy.regime import FixedRegime
from execution.venues.paper import DictPriceFeed, PaperVenue
from research.pnl import close_outcome, open_fee
from tests.execution.copy_fixtures import BTC, CATALOGUE, LEADER, add_followers, leader_event

pytestmark = pytest.mark.integration


async def test_open_partial_close_close_exactly_once(migrated_pool: asyncpg.Pool) -> None:
    pool = migrated_pool
    fixed = await add_followers(pool, 2)
    capped = FollowConfig(SizingMode.MULTIPLIER, multiplier=Decimal("0.5"), leverage_cap=Decimal(5))
    (mult,) = await add_followers(pool, 1, capped)
    feed = DictPriceFeed({BTC: Decimal(60_000)})
    venue = PaperVenue(pool, CATALOGUE, feed, spread_bps=0)
    config = EngineConfig(max_delay_ms=60_000, lane_min=1)  # three followers: two lanes side by side
    async with CopyEngine(pool, None, venue, feed, CATALOGUE, config) as engine:
        opened = leader_event(EventKind.OPEN, collateral=1_000_000_000, leverage="10")
        assert await engine.handle(opened) == {"refused": 0, "filled": 3}
        assert await engine.handle(opened) == {"refused": 0}  # redelivered: nothing is sent again
        feed.prices[BTC] = Decimal(61_200)
        partial = leader_event(
            EventKind.PARTIAL_CLOSE,
            n=1,
            collateral=1_000_000_000,
            closed=400_000_000,
            price="61200",
            open_ts=opened.open_ts,
        )
        assert (await engine.handle(partial))["filled"] == 3
        full = leader_event(
            EventKind.CLOSE,
            n=2,
            collateral=600_000_000,
            closed=600_000_000,
            price="61200",
            open_ts=opened.open_ts,
        )
        assert (await engine.handle(full))["filled"] == 3
        assert await engine.handle(full) == {"refused": 0}  # the journal already has these intents

    orders = await pool.fetch(
        "SELECT client_ref, account, action, collateral_usdc, usdc_sent FROM paper_orders ORDER BY seq"
    )
    assert len(orders) == 9 and len({o["client_ref"] for o in orders}) == 9
    # The multiplier follower: 0.5 x 1,000 USDC at leverage min(10, cap 5); fee on the notional.
    fee = open_fee(500_000_000, 5 * 10**10, CATALOGUE[BTC].open_fee_ppm)
    mine = [o for o in orders if o["account"] == str(mult)]
    assert mine[0]["collateral_usdc"] == 500_000_000 - fee
    held = 500_000_000 - fee
    part = held * 400_000_000 // 1_000_000_000  # in proportion to what the leader closed
    assert mine[1]["collateral_usdc"] == part and mine[2]["collateral_usdc"] == held - part
    expected = close_outcome(part, 5 * 10**10, 60_000 * 10**10, 61_200 * 10**10, opened.side)
    assert mine[1]["usdc_sent"] == expected.usdc_sent

    position = await pool.fetchrow("SELECT * FROM copy_positions WHERE profile_id = $1", mult)
    assert position["status"] == "closed" and position["collateral_usdc"] == 0
    assert position["leader_entry_price"] == Decimal(60_000) and position["entry_price"] == Decimal(60_000)
    pnl = sum(o["usdc_sent"] - o["collateral_usdc"] for o in mine[1:])
    assert position["realized_pnl_usdc"] == pnl
    equity = await pool.fetchval("SELECT equity_usdc FROM copytrader_profiles WHERE id = $1", mult)
    assert equity == 10_000_000_000 + pnl
    attribution = await pool.fetchrow(
        "SELECT * FROM copy_performance_attribution WHERE profile_id = $1", mult
    )
    assert attribution["leader_address"] == LEADER and attribution["copied_trades"] == 1
    assert attribution["realized_pnl_usdc"] == pnl
    fees = await pool.fetchval("SELECT sum(fee_usdc) FROM paper_orders WHERE account = $1", str(mult))
    assert attribution["fees_usdc"] == fees and fees > fee  # the opening fee and both closing fees
    states = await pool.fetch("SELECT state, count(*) FROM copy_intents GROUP BY state")
    assert {r["state"]: r["count"] for r in states} == {"filled": 9}
    notes = await pool.fetchval("SELECT count(*) FROM notifications WHERE kind = 'fill'")
    assert notes == 9 and fixed


async def test_refusals_are_journaled_with_reasons_and_notified(migrated_pool: asyncpg.Pool) -> None:
    pool = migrated_pool
    await add_followers(
        pool, 1, FollowConfig(SizingMode.FIXED, fixed_collateral_usdc=5_000_000)
    )  # 5 USDC x10 < 100
    await add_followers(
        pool, 1, FollowConfig(SizingMode.FIXED, fixed_collateral_usdc=100_000_000, side_filter="short")
    )
    feed = DictPriceFeed({BTC: Decimal(60_000)})
    venue = PaperVenue(pool, CATALOGUE, feed)
    async with CopyEngine(pool, None, venue, feed, CATALOGUE, EngineConfig(max_delay_ms=60_000)) as engine:
        assert await engine.handle(leader_event(EventKind.OPEN)) == {"refused": 2}
        stale = leader_event(EventKind.OPEN, n=5, ts=1_700_000_000, open_ts=1_800_000_000)
        assert await engine.handle(stale) == {"refused": 2}
    reasons = {
        r["refusal_reason"]
        for r in await pool.fetch("SELECT refusal_reason FROM copy_intents WHERE state = 'refused'")
    }
    assert reasons == {"below_venue_minimum", "side_filtered", "event_too_old"}
    assert await pool.fetchval("SELECT count(*) FROM paper_orders") == 0
    assert await pool.fetchval("SELECT count(*) FROM notifications WHERE kind = 'refused'") == 4


async def test_regime_guard_refuses_opens_while_red_or_unknown(migrated_pool: asyncpg.Pool) -> None:
    pool = migrated_pool
    (free,) = await add_followers(pool, 1)
    guarded_config = FollowConfig(SizingMode.FIXED, fixed_collateral_usdc=100_000_000, regime_guard=True)
    (guarded,) = await add_followers(pool, 1, guarded_config)
    feed = DictPriceFeed({BTC: Decimal(60_000)})
    venue = PaperVenue(pool, CATALOGUE, feed, spread_bps=0)
    regime = FixedRegime({BTC: "red"})
    config = EngineConfig(max_delay_ms=60_000)
    async with CopyEngine(pool, None, venue, feed, CATALOGUE, config, regime=regime) as engine:
        assert await engine.handle(leader_event(EventKind.OPEN, n=1)) == {"refused": 1, "filled": 1}
        regime.by_pair.clear()  # the model has no answer: a guarded follow is not copied on a guess
        assert await engine.handle(leader_event(EventKind.OPEN, n=2, trade_index=1)) == {
            "refused": 1,
            "filled": 1,
        }
        regime.by_pair[BTC] = "green"
        assert await engine.handle(leader_event(EventKind.OPEN, n=3, trade_index=2)) == {
            "refused": 0,
            "filled": 2,
        }
    reasons = await pool.fetch(
        "SELECT refusal_reason FROM copy_intents WHERE profile_id = $1 AND state = 'refused' ORDER BY created_at",
        guarded,
    )
    assert [r["refusal_reason"] for r in reasons] == ["regime_red", "regime_unknown"]
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM copy_intents WHERE profile_id = $1 AND state = 'filled'", free
        )
        == 3
    )
