"""The copy service as the bot will call it: each Telegram user sees and changes only their own
profiles and follows, the operator sees all; pause, resume, stop, delete, edits and the kill
switch; a venue name that is not one is refused, never mapped to another venue."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

from data.events import EventKind
from execution.copy.engine import KILL_SWITCH_KEY, CopyEngine, EngineConfig
from execution.copy.service import Actor, CopyError, CopyService, FollowInput, ProfileInput
from execution.venues.paper import DictPriceFeed, PaperVenue
from infra.bus import connect
from infra.settings import load_settings
from tests.execution.copy_fixtures import BTC, CATALOGUE, LEADER, leader_event

pytestmark = pytest.mark.integration
ALICE, BOB = Actor.user(111), Actor.user(222)


async def refused(work: object, message: str) -> None:
    with pytest.raises(CopyError) as caught:
        await work  # type: ignore[misc]
    assert message in str(caught.value), str(caught.value)


async def test_users_see_and_change_only_their_own(migrated_pool: asyncpg.Pool) -> None:
    service = CopyService(migrated_pool, catalogue=CATALOGUE)
    mine = await service.follow(ALICE, LEADER, FollowInput(fixed="100"), ProfileInput(name="main"))
    await service.follow(BOB, LEADER, FollowInput(mode="multiplier", multiplier="0.5"), ProfileInput())
    assert [p.name for p in await service.profiles(ALICE)] == ["main"]
    assert len(await service.profiles(Actor.operator())) == 2
    assert [f.id for f in await service.follows(ALICE)] == [mine.follow_id]
    for attempt in (
        service.copies(BOB, mine.profile_id),
        service.pause(BOB, mine.profile_id),
        service.delete_profile(BOB, mine.profile_id),
        service.update_profile(BOB, mine.profile_id, equity="5"),
        service.recent(BOB, mine.profile_id),
    ):
        await refused(attempt, f"no such profile {mine.profile_id}")
    await refused(service.unfollow(BOB, mine.follow_id), f"no live follow {mine.follow_id}")
    await refused(service.edit_follow(BOB, mine.follow_id, FollowInput(fixed="1")), "no live follow")
    await refused(service.kill_switch(ALICE, True), "only an operator may")
    await refused(service.reconcile(ALICE, "paper"), "only an operator may")
    # The operator sees everything; Alice manages her own.
    assert (await service.copies(Actor.operator(), mine.profile_id)).per_leader == []
    assert (await service.pause(ALICE, mine.profile_id)).status == "paused"
    assert (await service.stop(ALICE, mine.profile_id)).status == "stopped"
    assert (await service.resume(ALICE, mine.profile_id)).status == "active"
    edited = await service.edit_follow(ALICE, mine.follow_id, FollowInput(fixed="250", leverage_cap="5"))
    assert edited.id == mine.follow_id and edited.settings["fixed_collateral_usdc"] == 250_000_000
    assert edited.settings["leverage_cap"] == Decimal(5)
    await refused(
        service.edit_follow(ALICE, mine.follow_id, FollowInput(mode="equity_pct", pct="2")),
        "equity: equity_pct sizing needs the profile's equity",
    )
    view = await service.update_profile(ALICE, mine.profile_id, equity="1000", daily_loss_limit="50")
    assert (view.equity_usdc, view.daily_loss_limit_usdc) == (1_000_000_000, 50_000_000)
    await service.unfollow(ALICE, mine.follow_id)
    assert await service.follows(ALICE) == []


async def test_a_profile_with_open_copies_cannot_be_deleted(migrated_pool: asyncpg.Pool) -> None:
    pool = migrated_pool
    service = CopyService(pool, catalogue=CATALOGUE)
    done = await service.follow(ALICE, LEADER, FollowInput(fixed="100"), ProfileInput(name="main"))
    await pool.execute("UPDATE leader_follows SET followed_at = now() - interval '10 seconds'")
    feed = DictPriceFeed({BTC: Decimal(60_000)})
    venue = PaperVenue(pool, CATALOGUE, feed, spread_bps=0)
    async with CopyEngine(pool, None, venue, feed, CATALOGUE, EngineConfig(max_delay_ms=60_000)) as engine:
        opened = leader_event(EventKind.OPEN)
        await engine.handle(opened)
        await refused(service.delete_profile(ALICE, done.profile_id), "still holds 1 open copy")
        report = await service.copies(ALICE, done.profile_id, {BTC: Decimal(61_200)})
        (leader,) = report.per_leader
        assert (leader.positions, leader.open) == (1, 1) and leader.unrealized_pnl_usdc is not None
        assert leader.unrealized_pnl_usdc > 0 and leader.fees_usdc > 0  # a long, the price up 2 %
        assert (await service.copies(ALICE, done.profile_id)).per_leader[0].unrealized_pnl_usdc is None
        close = leader_event(EventKind.CLOSE, n=1, open_ts=opened.open_ts, closed=opened.collateral_usdc)
        await engine.handle(close)
    (leader,) = (await service.copies(ALICE, done.profile_id)).per_leader
    assert (leader.open, leader.unrealized_pnl_usdc) == (0, 0)
    assert [c.action for c in await service.recent(ALICE, done.profile_id)] == ["close", "open"]
    texts = [n.text for n in await service.notifications(ALICE)]
    assert texts[1].startswith("Copied 0xabababab: LONG BTC/USD 99.55 USDC x10 at 60000")
    assert texts[0].startswith("Closed all of your BTC/USD copy of 0xabababab:")
    # The bot's outbox: what to send, to whom, worded; then marked.
    await refused(service.pending_notifications(ALICE), "only an operator may")
    outbox = await service.pending_notifications(Actor.operator())
    assert [(n.telegram_user_id, n.level, n.text) for n in outbox] == [
        (111, "fill", texts[1]),
        (111, "fill", texts[0]),
    ]
    await service.mark_notified(Actor.operator(), [outbox[0].id], delivered=True)
    for _ in range(5):
        await service.mark_notified(Actor.operator(), [outbox[1].id], delivered=False)
    assert await service.pending_notifications(Actor.operator()) == []
    assert [n.status for n in await service.notifications(ALICE)] == ["failed", "sent"]
    await service.delete_profile(ALICE, done.profile_id)
    assert await service.profiles(ALICE) == []
    again = await service.follow(ALICE, LEADER, FollowInput(fixed="100"), ProfileInput(name="main"))
    assert again.profile_id != done.profile_id  # the name is free again; the history stays


async def test_an_open_in_the_second_of_the_follow_is_copied(migrated_pool: asyncpg.Pool) -> None:
    """Leader events carry whole seconds and the follow's time has microseconds: the follow counts
    from its second (floored), so an open stamped that second is copied, not refused as older."""
    pool = migrated_pool
    service = CopyService(pool, catalogue=CATALOGUE)
    done = await service.follow(ALICE, LEADER, FollowInput(fixed="100"), ProfileInput(name="main"))
    opened = leader_event(EventKind.OPEN, open_ts=1_800_000_000, ts=1_800_000_000)
    await pool.execute(
        "UPDATE leader_follows SET followed_at = to_timestamp($1::float8)", opened.open_ts + 0.6
    )
    feed = DictPriceFeed({BTC: Decimal(60_000)})
    venue = PaperVenue(pool, CATALOGUE, feed, spread_bps=0)
    async with CopyEngine(pool, None, venue, feed, CATALOGUE, EngineConfig(max_delay_ms=10**15)) as engine:
        await engine.handle(opened)
    [copy] = await service.recent(ALICE, done.profile_id)
    assert (copy.action, copy.state, copy.reason) == ("open", "filled", None)


async def test_kill_switch_and_venues_by_name(migrated_pool: asyncpg.Pool, redis_server_url: str) -> None:
    redis = connect(redis_server_url)
    settings = load_settings(_env_file=None, copy_delegate_key=None)
    service = CopyService(migrated_pool, redis, settings, CATALOGUE)
    try:
        assert await service.kill_switch(Actor.operator(), True) is True
        assert await redis.get(KILL_SWITCH_KEY) == "1"
        await service.kill_switch(Actor.operator(), False)
        assert await redis.get(KILL_SWITCH_KEY) is None
    finally:
        await redis.aclose()
    await refused(service.reconcile(Actor.operator(), "binance"), "venue: unknown venue 'binance'")
    await refused(service.reconcile(Actor.operator(), "onchain"), "COPY_DELEGATE_KEY is not set")
    assert await service.reconcile(Actor.operator(), "PAPER") == []
