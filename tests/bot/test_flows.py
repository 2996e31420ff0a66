"""Flows that the end-to-end path does not walk, over HTTP against the real service: a user cannot
touch another user's profile even with forged buttons, the notification level decides what is
delivered, a real-money profile waits for its delegate registration on a real chain (anvil), and
/follow's address question answers nonsense."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from eth_account import Account

from bot import preferences
from execution.copy.service import Actor, CopyService, FollowInput, ProfileInput
from infra import bus
from infra.chain.anvil import DEFAULT_KEYS, run_anvil
from infra.chain.contracts import deploy
from serving.client import ServingClient
from tests.bot.harness import running_bot
from tests.bot.outbox_fixtures import LEADER, add_notices, fill
from tests.servers import free_port
from tests.waiting import until

pytestmark = pytest.mark.integration
ANN, BOB = 5001, 5002
DELEGATE_KEY = DEFAULT_KEYS[2]


@pytest.fixture
async def service(migrated_pool: asyncpg.Pool, redis_server_url: str):  # type: ignore[no-untyped-def]
    redis = bus.connect(redis_server_url)
    yield CopyService(migrated_pool, redis)
    await redis.aclose()


def _nowhere() -> ServingClient:
    return ServingClient(f"http://127.0.0.1:{free_port()}", timeout_s=0.5, attempts=1)


async def test_forged_buttons_cannot_touch_someone_elses_profile(
    migrated_pool: asyncpg.Pool, redis_server_url: str, service: CopyService
) -> None:
    ann = Actor.user(ANN)
    profile = await service.create_profile(ann, ProfileInput(name="main", venue="paper", equity="1000"))
    followed = await service.follow(
        ann, LEADER, FollowInput(mode="fixed", fixed="100"), ProfileInput(name="main")
    )
    await preferences.set_copy_settings(
        migrated_pool, profile.id, ANN, {"sizing_mode": "fixed", "amount": "100"}
    )
    async with running_bot(migrated_pool, redis_server_url, service=service, market=_nowhere()) as bot:
        fake = bot.fake
        start = await fake.reply_to(BOB, "/start")
        for forged in (f"sy:{profile.id}", f"pz:{profile.id}", f"ct:e:{profile.id}", f"uy:{followed.follow_id}",
                       f"fw:y:{profile.id}:{LEADER}", f"rs:{profile.id}"):  # fmt: skip
            said, answered = fake.chat_actions(BOB), len(fake.ok_calls("answerCallbackQuery"))
            fake.press_data(BOB, start, forged)
            await fake.wait_for(
                lambda s=said, a=answered: (
                    fake.chat_actions(BOB) > s or len(fake.ok_calls("answerCallbackQuery")) > a
                ),
                what=f"an answer to {forged}",
            )
            await bot.app.update_processor.wait_processed(fake.pushed)  # type: ignore[attr-defined]
            if fake.chat_actions(BOB) > said:  # a button of a flow: refused in words
                assert fake.last(BOB).plain.startswith(
                    ("I couldn't do that: no such", "I couldn't do that: no live")
                ), forged
            else:  # a dialog's button outside its dialog: just an old button
                assert "older message" in fake.ok_calls("answerCallbackQuery")[-1].params["text"], forged
        [still] = await service.profiles(ann)
        assert still.status == "active"
        assert [f.id for f in await service.follows(ann)] == [followed.follow_id]
        # Bob's own lists are empty: nothing of Ann's shows.
        assert "You have none yet" in (await fake.reply_to(BOB, "/copytrader")).plain
        assert "not following anyone" in (await fake.reply_to(BOB, "/unfollow")).plain
        # Ann unfollows, with confirmation.
        listing = await fake.reply_to(ANN, "/unfollow")
        confirm = await fake.click(ANN, listing, "0xabab")
        assert "not closed with the leader" in confirm.plain
        done = await fake.click(ANN, confirm, "Yes, stop copying")
        assert "Stopped copying" in done.plain
    assert await service.follows(ann) == []


async def test_the_notification_level_decides_what_is_delivered(
    migrated_pool: asyncpg.Pool, redis_server_url: str, service: CopyService
) -> None:
    pool = migrated_pool
    profile = await service.create_profile(
        Actor.user(ANN), ProfileInput(name="main", venue="paper", equity="100")
    )
    async with running_bot(pool, redis_server_url, service=service, market=_nowhere(), deliver=True) as bot:
        fake = bot.fake
        screen = await fake.reply_to(ANN, "/settings")
        assert "Now: Everything, also copies not placed" in screen.plain
        saved = await fake.click(ANN, screen, "Only pauses and failures")
        assert "From now on: Only pauses and failures" in saved.plain
        user_id = await pool.fetchval("SELECT id FROM users WHERE telegram_user_id = $1", ANN)
        [fill_id] = await add_notices(pool, [(user_id, fill(1))])
        [paused_id] = await add_notices(
            pool,
            [(user_id, {"intent_id": "p1", "reason": "daily_loss_limit"})],
            kind="paused",
            level="critical",
        )
        await fake.wait_for(lambda: "Copying paused" in fake.last(ANN).plain, what="the pause alert")
        assert "daily loss limit has been reached" in fake.last(ANN).plain
    statuses = {r["id"]: r["status"] for r in await pool.fetch("SELECT id, status FROM notifications")}
    assert statuses == {fill_id: "skipped", paused_id: "sent"} and profile.id


async def test_a_real_money_profile_waits_for_its_delegate_on_chain(
    migrated_pool: asyncpg.Pool, redis_server_url: str, service: CopyService
) -> None:
    ours = Account.from_key(DELEGATE_KEY).address
    with run_anvil() as node:
        chain = await asyncio.to_thread(deploy, node.http_url, DEFAULT_KEYS[0])
        wallet = await asyncio.to_thread(chain.funded_trader, "vanta-bot-follower", 1_000 * 10**6)
        from data.sources.chain.rpc import ChainRpc

        rpc = ChainRpc(node.http_url, max_attempts=2)
        try:
            async with running_bot(
                migrated_pool,
                redis_server_url,
                service=service,
                market=_nowhere(),
                delegate_address=ours,
                chain=rpc,
                trading_address=chain.trading.address,
            ) as bot:
                fake = bot.fake
                menu = await fake.reply_to(ANN, "/copytrader")
                await fake.click(ANN, menu, "Create a profile")
                venues = await fake.reply_to(ANN, "real")
                prompt = await fake.click(ANN, venues, "On-chain")
                assert ours in prompt.plain and "setDelegate" in prompt.plain
                assert "isn't a wallet address" in (await fake.reply_to(ANN, "my wallet")).plain
                missing = await fake.reply_to(ANN, wallet.lower())
                assert "can't see our delegate registered" in missing.plain
                # The follower registers our delegate on chain, then asks again.
                await asyncio.to_thread(chain.send_as, chain.trading.functions.setDelegate(ours), wallet)
                ok = await fake.click(ANN, missing, "Check again", until=lambda ms: "registered for" in ms[-1].plain
                                      or "How many USDC" in ms[-1].plain)  # fmt: skip
                assert "How many USDC" in ok.plain or "registered for" in ok.plain
                # ...and the rest of the profile; then a revoked delegate keeps /resume from enabling it.
                await fake.reply_to(ANN, "500", until=lambda ms: "How big" in ms[-1].plain)
                sizing = fake.last(ANN)
                await fake.click(ANN, sizing, "Same share as the leader")
                for _ in range(12):  # every later question answered by its first button or a typed "none"
                    last = fake.last(ANN)
                    if "Your new profile" in last.plain:
                        break
                    if last.buttons and not last.buttons[0]["callback_data"].endswith("cancel"):
                        await fake.click(ANN, last, last.buttons[0]["text"])
                    else:
                        await fake.reply_to(ANN, "none")
                summary = fake.last(ANN)
                assert "Your new profile" in summary.plain and "Wallet:" in summary.plain
                saved = await fake.click(ANN, summary, "Save")
                assert "Profile real saved" in saved.plain and "paused" not in saved.plain
                await asyncio.to_thread(
                    chain.send_as, chain.trading.functions.setDelegate("0x" + "00" * 20), wallet
                )
                assert "real is paused" in (await fake.reply_to(ANN, "/pause")).plain
                refused = await fake.reply_to(ANN, "/resume")
                assert "our delegate" in refused.plain and "is not registered" in refused.plain
                [profile] = await service.profiles(Actor.user(ANN))
                assert profile.status == "paused" and profile.venue == "onchain"
        finally:
            await rpc.close()


async def test_follow_asks_for_an_address_and_answers_nonsense(
    migrated_pool: asyncpg.Pool, redis_server_url: str, service: CopyService
) -> None:
    ann = Actor.user(ANN)
    for name in ("main", "safe"):
        p = await service.create_profile(ann, ProfileInput(name=name, venue="paper", equity="1000"))
        await preferences.set_copy_settings(
            migrated_pool,
            p.id,
            ANN,
            {"sizing_mode": "fixed", "amount": "50", "slippage_bps": "50", "side": "both"},
        )
    async with running_bot(migrated_pool, redis_server_url, service=service, market=_nowhere()) as bot:
        fake = bot.fake
        assert "Send their address" in (await fake.reply_to(ANN, "/follow")).plain
        assert "isn't a wallet address" in (await fake.reply_to(ANN, "the best one")).plain
        assert "typo" in (await fake.reply_to(ANN, "0x52908400098527886E0F7030069857D2E4169Ee7")).plain
        picker = await fake.reply_to(ANN, LEADER)
        assert "with which profile?" in picker.plain and len(picker.buttons) == 3
        confirm = await fake.click(ANN, picker, "safe")
        assert "Amount: 50.00 USDC" in confirm.plain
        done = await fake.click(ANN, confirm, "✅ Follow")
        assert "Following" in done.plain and "safe" in done.plain
        # The AI service is down: said plainly, nothing invented.
        down = await fake.reply_to(ANN, "/alfa")
        assert "isn't answering right now" in down.plain and "I won't guess" in down.plain
        # Without a delegate key, real-money venues are refused at the venue question.
        menu = await fake.reply_to(ANN, "/copytrader")
        await fake.click(ANN, menu, "New profile")
        venues = await fake.reply_to(ANN, "third")
        refused = await fake.click(ANN, venues, "Veranta")
        assert "not available on this Vanta" in refused.plain
        assert "Where should copies be placed?" in fake.messages(ANN)[-2].plain  # asked again
    [f] = await service.follows(ann)
    assert (f.profile, f.leader, f.settings["fixed_collateral_usdc"]) == ("safe", LEADER, 50_000_000)
    stored = await migrated_pool.fetchval("SELECT settings FROM bot_profile_settings LIMIT 1")
    assert json.loads(stored)["amount"] == "50"


async def test_editing_a_profile_changes_it_and_every_follow_of_it(
    migrated_pool: asyncpg.Pool, redis_server_url: str, service: CopyService
) -> None:
    ann = Actor.user(ANN)
    profile = await service.create_profile(ann, ProfileInput(name="main", venue="paper", equity="1000"))
    await preferences.set_copy_settings(
        migrated_pool,
        profile.id,
        ANN,
        {"sizing_mode": "fixed", "amount": "100", "slippage_bps": "50", "side": "both", "reverse": False},
    )
    await service.follow(ann, LEADER, FollowInput(mode="fixed", fixed="100"), ProfileInput(name="main"))
    async with running_bot(migrated_pool, redis_server_url, service=service, market=_nowhere()) as bot:
        fake = bot.fake
        menu = await fake.reply_to(ANN, "/copytrader")
        assert "main · paper · ▶️ active · equity 1,000.00 USDC" in menu.plain
        summary = await fake.click(ANN, menu, "✏️ main")
        assert "Changes to your profile" in summary.plain and "Amount: 100.00 USDC" in summary.plain
        fields = await fake.click(ANN, summary, "Change something")
        assert "Venue" not in [b["text"] for b in fields.buttons]  # a stored profile keeps its venue
        await fake.click(ANN, fields, "Amount")
        summary = await fake.reply_to(ANN, "250")
        assert "Amount: 250.00 USDC" in summary.plain
        fields = await fake.click(ANN, summary, "Change something")
        await fake.click(ANN, fields, "Daily loss limit")
        assert "doesn't look like" in (await fake.reply_to(ANN, "half of it")).plain
        summary = await fake.reply_to(ANN, "300")
        assert "Daily loss limit: 300.00 USDC" in summary.plain
        saved = await fake.click(ANN, summary, "Save")
        assert "Profile main updated" in saved.plain
    [after] = await service.profiles(ann)
    assert after.daily_loss_limit_usdc == 300_000_000 and after.equity_usdc == 1_000_000_000
    [f] = await service.follows(ann)
    assert f.settings["fixed_collateral_usdc"] == 250_000_000
    assert (await preferences.copy_settings(migrated_pool, profile.id) or {})["amount"] == "250"


async def test_a_user_who_blocked_the_bot_has_their_profiles_paused(
    migrated_pool: asyncpg.Pool, redis_server_url: str, service: CopyService
) -> None:
    ann = Actor.user(ANN)
    await service.create_profile(ann, ProfileInput(name="main", venue="paper", equity="1000"))
    user_id = await migrated_pool.fetchval("SELECT id FROM users WHERE telegram_user_id = $1", ANN)
    async with running_bot(
        migrated_pool, redis_server_url, service=service, market=_nowhere(), deliver=True
    ) as bot:
        bot.fake.open_chat(ANN)
        bot.fake.block(ANN)
        await add_notices(migrated_pool, [(user_id, fill(1)), (user_id, fill(2))])

        async def paused() -> bool:
            return [p.status for p in await service.profiles(ann)] == ["paused"]

        await until(paused, what="the profile paused after the 403")
        # The user unblocks the bot and resumes.
        bot.fake.blocked.discard(ANN)
        assert "main copies again" in (await bot.fake.reply_to(ANN, "/resume")).plain
    statuses = [r["status"] for r in await migrated_pool.fetch("SELECT status FROM notifications")]
    assert statuses == ["failed", "failed"]
    assert [p.status for p in await service.profiles(ann)] == ["active"]


async def test_admins_switch_the_kill_switch_and_read_health(
    migrated_pool: asyncpg.Pool, redis_server_url: str, service: CopyService
) -> None:
    from execution.copy.engine import KILL_SWITCH_KEY

    admin = 6001
    async with running_bot(
        migrated_pool, redis_server_url, service=service, market=_nowhere(), admins=frozenset({admin})
    ) as bot:
        fake = bot.fake
        assert "for Vanta's operators only" in (await fake.reply_to(ANN, "/health")).plain
        assert "for Vanta's operators only" in (await fake.reply_to(ANN, "/kill")).plain
        state = await fake.reply_to(admin, "/kill")
        assert "Kill switch is off" in state.plain
        confirm = await fake.click(admin, state, "Turn the kill switch ON")
        assert "Stop all copying for every follower" in confirm.plain
        on = await fake.click(admin, confirm, "Yes, stop everything")
        assert "Kill switch is ON" in on.plain
        assert service.redis is not None and await service.redis.get(KILL_SWITCH_KEY) == "1"
        health = await fake.reply_to(admin, "/health")
        assert (
            "kill switch ON" in health.plain
            and "AI service" in health.plain
            and "not answering" in health.plain
        )
        assert "Alerts (last 24 h)" in health.plain
        off = await fake.click(admin, await fake.click(admin, on, "Turn it off"), "Yes, resume copying")
        assert "Kill switch is off" in off.plain and await service.redis.get(KILL_SWITCH_KEY) is None


async def test_deleting_a_profile_asks_first_and_refuses_while_copies_are_open(
    migrated_pool: asyncpg.Pool, redis_server_url: str, service: CopyService
) -> None:
    ann = Actor.user(ANN)
    await service.create_profile(ann, ProfileInput(name="main", venue="paper", equity="1000"))
    async with running_bot(migrated_pool, redis_server_url, service=service, market=_nowhere()) as bot:
        fake = bot.fake
        menu = await fake.reply_to(ANN, "/copytrader")
        ask = await fake.click(ANN, menu, "🗑 main")
        assert "Delete profile main?" in ask.plain
        kept = await fake.click(ANN, ask, "No, keep it")
        assert "main · paper" in kept.plain
        ask = await fake.click(ANN, kept, "🗑 main")
        gone = await fake.click(ANN, ask, "Yes, delete it")
        assert "You have none yet" in gone.plain
    assert await service.profiles(ann) == []
