"""A follower's whole path, over real HTTP, as a user would take it: the real `Application` against
the fake Bot API, the copy service and copy engine (paper venue) on real PostgreSQL and Redis, the
real BentoML service on a simulated snapshot.

/start → /copytrader, every question (nonsense first at each typed one; the bot restarted half-way
through) → /alfa, pages turned and sorted in place → a trader's card with a real PNG → Follow →
the trader opens a position, the engine copies it → the fill alert arrives → /status shows the
copy and its PnL → /pause → the trader's next open is refused, and the user is told why → /stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import struct
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from data.events import EventKind, Side, TradeEvent
from data.pairs import builtin_catalogue
from execution.copy.engine import CopyEngine, EngineConfig, LastPriceFeed
from execution.copy.service import Actor, CopyService
from execution.venues.paper import PaperVenue
from infra import bus, db
from infra.bus import StreamBus
from serving.client import ServingClient
from tests.bot.conftest import Served
from tests.bot.harness import running_bot
from tests.fakes.telegram_api import PNG_MAGIC, BotMessage, FakeTelegram
from tests.waiting import until

pytestmark = pytest.mark.integration
ANN = 424_242
CATALOGUE = builtin_catalogue()
BTC = 1


def _texts(fake: FakeTelegram) -> list[str]:
    return [m.plain for m in fake.messages(ANN)]


async def _type(fake: FakeTelegram, text: str, expect: str) -> BotMessage:
    msg = await fake.reply_to(ANN, text)
    assert expect in msg.plain, f"after {text!r} expected {expect!r}, got: {msg.plain[:400]}"
    return msg


async def _press(fake: FakeTelegram, msg: BotMessage, label: str, expect: str) -> BotMessage:
    after = await fake.click(ANN, msg, label)
    assert expect in after.plain, f"after pressing {label!r} expected {expect!r}, got: {after.plain[:400]}"
    return after


@contextlib.asynccontextmanager
async def copy_engine(pool: asyncpg.Pool, redis_url: str) -> AsyncIterator[None]:
    """The copy engine consuming the event stream (paper venue), from now on."""
    redis = bus.connect(redis_url)
    feed = LastPriceFeed()
    group = f"e2e-{secrets.token_hex(4)}"
    engine = CopyEngine(
        pool,
        redis,
        PaperVenue(pool, CATALOGUE, feed, spread_bps=0),
        feed,
        CATALOGUE,
        EngineConfig(max_delay_ms=60_000, group=group, claim_idle_ms=1_000),
    )
    stop = asyncio.Event()
    async with engine:
        task = asyncio.create_task(engine.run(stop, start_id="$"))

        async def joined() -> bool:
            groups = (
                await redis.xinfo_groups(bus.EVENTS_STREAM) if await redis.exists(bus.EVENTS_STREAM) else []
            )
            return any(g["name"] == group for g in groups)

        await until(joined, what="the engine's consumer group")
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    await redis.aclose()


async def _leader_opens(redis_url: str, leader: str, trade_index: int) -> None:
    """What the indexer would publish when the leader opens a BTC long. Chain time is whole seconds
    and the engine compares it with the follow's time in whole seconds (rounded), so a position
    opened within the second of the follow could read as opened before it: this one is stamped
    the next second, as it would be a moment after the user followed."""
    now = int(time.time()) + 1
    event = TradeEvent(
        event_id=f"e2e:{leader}:{trade_index}:{secrets.token_hex(3)}",
        venue="avantis",
        source="chain",
        trader=leader,
        pair_index=BTC,
        kind=EventKind.OPEN,
        trade_index=trade_index,
        open_ts=now,
        ts=now,
        side=Side.LONG,
        collateral_usdc=2_000_000_000,
        leverage=Decimal(10),
        price=Decimal(60_000),
    )
    redis = bus.connect(redis_url)
    try:
        await StreamBus(redis).publish(event.to_record())
    finally:
        await redis.aclose()


async def _copytrader_first_half(fake: FakeTelegram) -> None:
    menu = await _type(fake, "/copytrader", "You have none yet")
    await _press(fake, menu, "Create a profile", "1/16 · Name")
    await _type(fake, "<b>bold</b>", "A profile name is 1 to 32 letters")
    venue = await _type(fake, "main", "Where should copies be placed?")
    await _type(fake, "the moon", "Please pick one of the buttons")
    await _press(fake, venue, "Paper", "How many USDC does this account hold")
    await _type(fake, "a lot", "doesn't look like an amount of USDC")
    await _type(fake, "-20", "Please send a number from 1 to 10,000,000")
    await _type(fake, "1,000", "How big should each copy be?")


async def _copytrader_second_half(fake: FakeTelegram) -> None:
    """Continues where the first half left off, after the bot restarted."""
    sizing = fake.last(ANN)
    await _press(fake, sizing, "Fixed USDC per trade", "How many USDC of margin per copied trade?")
    await _type(fake, "0.5", "from 1 to 10,000,000")
    leverage = await _type(fake, "100", "Highest leverage a copy may use")
    await _type(fake, "500", "from 1 to 100")
    max_position = await _press(fake, leverage, "10×", "Largest position size")
    await _type(fake, "lots", "doesn't look like an amount of USDC")
    await _press(fake, max_position, "No limit", "Largest total size of all your open copies")
    await _type(fake, "5000", "How many USDC may you lose in one day")
    drawdown = await _type(fake, "250", "below its peak")
    await _type(fake, "150%", "from 1 to 100")
    slippage = await _press(fake, drawdown, "30%", "How far may the price move")
    await _type(fake, "12", "from 0 to 5")
    await _press(fake, slippage, "0.5%", "Copy only some pairs?")
    await _type(fake, "BTC, DOGGO", "I don't know the pair DOGGO")
    blocked = await _type(fake, "btc, eth/usd", "Pairs never to copy?")
    sides = await _press(fake, blocked, "None", "Which of the leader's trades should be copied?")
    await _type(fake, "sideways", "Please pick one of the buttons")
    reverse = await _press(fake, sides, "Longs and shorts", "take the opposite side")
    guard = await _press(fake, reverse, "Copy as is", "Skip new copies while the market regime")
    summary = await _press(fake, guard, "No", "Your new profile")
    for shown in ("Name: main", "Venue: Paper", "Equity: 1,000.00 USDC", "Amount: 100.00 USDC",
                  "Leverage cap: 10×", "Max exposure: 5,000.00 USDC", "Daily loss limit: 250.00 USDC",
                  "Max drawdown: 30%", "Slippage bound: 0.5%", "Only pairs: BTC/USD, ETH/USD", "Never pairs: none"):  # fmt: skip
        assert shown in summary.plain, shown
    await _type(fake, "yes please", "Please pick one of the buttons")
    await _press(fake, summary, "Save", "Profile main saved")


async def test_a_follower_from_start_to_stop(served: Served, redis_server_url: str, tmp_path: Path) -> None:
    pool = await db.create_pool(served.snapshot.db_url, max_size=6)
    redis = bus.connect(redis_server_url)
    service = CopyService(pool, redis, None, CATALOGUE)
    market = ServingClient(served.url, timeout_s=30)
    fake = FakeTelegram("7000000004:AAe2ee2ee2ee2ee2ee2ee2ee2ee2ee2ee2e")
    await fake.start()
    try:
        common = dict(service=service, market=market, catalogue=CATALOGUE, deliver=True, fake=fake)
        async with running_bot(pool, redis_server_url, **common):  # type: ignore[arg-type]
            welcome = await _type(fake, "/start", "The risks, plainly")
            assert "liquidation" in welcome.plain and "paper" in welcome.plain
            await _copytrader_first_half(fake)
        # The bot restarts in the middle of the conversation: the next answer continues it.
        async with running_bot(pool, redis_server_url, **common):  # type: ignore[arg-type]
            await _copytrader_second_half(fake)
            [profile] = await service.profiles(Actor.user(ANN))
            assert (profile.name, profile.venue, profile.equity_usdc) == ("main", "paper", 1_000_000_000)
            assert profile.daily_loss_limit_usdc == 250_000_000 and profile.max_drawdown_pct == 30

            # /alfa: a page of 10 with the evidence beside each rank, turned and sorted in place.
            board = await _type(fake, "/alfa", "AI leaderboard")
            assert "page 1/" in board.plain and "PSR" in board.plain and "DSR" in board.plain
            assert len([b for b in board.buttons if b["callback_data"].startswith("al:t:")]) == 10
            page2 = await _press(fake, board, "Next", "page 2/")
            assert page2.message_id == board.message_id and page2.edits  # the same message, edited
            assert "11." in page2.plain
            by_pnl = await _press(fake, page2, "PnL", "by PnL · page 1/")
            assert by_pnl.message_id == board.message_id
            await _press(fake, by_pnl, "AI score", "by AI score · page 1/")
            # The card of the first trader: a real PNG chart, then the card with a Follow button.
            first = fake.last(ANN).buttons[0]
            leader = first["callback_data"].split(":", 2)[2]
            fake.press_data(ANN, fake.last(ANN), first["callback_data"])
            await fake.wait_for(lambda: "Skill or luck?" in fake.last(ANN).plain, what="the card")
            card = fake.last(ANN)
            chart = fake.messages(ANN)[-2]
            assert chart.photo is not None and chart.photo.startswith(PNG_MAGIC)
            width, height = struct.unpack(">II", chart.photo[16:24])
            assert (width, height) == (800, 400)
            assert leader.lower() in card.plain.lower() and "Next 7 days" in card.plain
            assert "#1 on the AI leaderboard" in card.plain and "of all traders scored" in card.plain

            # /alpha: the regime per pair with its chart, then the opportunities.
            fake.send_text(ANN, "/alpha")
            await fake.wait_for(lambda: "Copy opportunities" in fake.last(ANN).plain, what="/alpha")
            regime = fake.messages(ANN)[-2]
            assert regime.photo is not None and regime.photo.startswith(PNG_MAGIC)
            assert "Market regime" in regime.plain and "BTC/USD" in regime.plain and "sure" in regime.plain

            # Follow, with the only profile.
            confirm = await _press(fake, card, "⭐ Follow", "with profile main")
            assert "Amount: 100.00 USDC" in confirm.plain and "Leverage cap: 10×" in confirm.plain
            await _press(fake, confirm, "✅ Follow", "Following")

            async with copy_engine(pool, redis_server_url):
                # The leader opens: the copy is placed and the fill alert arrives in the chat.
                await _leader_opens(redis_server_url, leader, 0)
                await fake.wait_for(
                    lambda: any(t.startswith("✅ Copied") for t in _texts(fake)), timeout=60, what="fill"
                )
                alert = next(t for t in _texts(fake) if t.startswith("✅ Copied"))
                assert "LONG BTC/USD" in alert and "99.55 USDC margin × 10 at 60,000" in alert

                status = await fake.reply_to(ANN, "/status")
                assert status.photo is not None and status.photo.startswith(PNG_MAGIC)
                assert "main · paper · ▶️ active · equity 1,000.00 USDC" in status.plain
                assert "realized +0.00" in status.plain or "realized 0.00" in status.plain
                assert "unrealized -0.44" in status.plain  # the closing fee at an unchanged price
                assert "fees 0.45" in status.plain and "1 copy, 1 open" in status.plain
                assert "✅ open BTC/USD" in status.plain and "at 60,000" in status.plain

                await _type(fake, "/pause", "main is paused")
                # The leader's next open is refused, and the user is told why.
                await _leader_opens(redis_server_url, leader, 1)
                await fake.wait_for(
                    lambda: any(t.startswith("⛔") for t in _texts(fake)), timeout=60, what="refusal"
                )
                refusal = next(t for t in _texts(fake) if t.startswith("⛔"))
                assert "your profile is paused" in refusal

            stop = await _type(fake, "/stop", "Stop main?")
            await _press(fake, stop, "Yes, stop it", "main is stopped")
            assert [p.status for p in await service.profiles(Actor.user(ANN))] == ["stopped"]
            await until(
                lambda: pool.fetchval("SELECT count(*) = 0 FROM notifications WHERE status = 'pending'"),
                what="every notice delivered",
            )
        assert not any("Something went wrong" in t for t in _texts(fake))
    finally:
        (tmp_path / "transcript.txt").write_text(
            "\n".join(line for chat, line in fake.transcript if chat == ANN)
        )
        await fake.stop()
        await market.close()
        await redis.aclose()
        await pool.close()
