"""The Application as a whole, over HTTP: the command menu, answers to what fits no flow, the
per-user rate limit in Redis, admin-only commands, and no spinner left on a stale button."""

from __future__ import annotations

import secrets

import asyncpg
import pytest

from tests.bot.harness import running_bot

pytestmark = pytest.mark.integration
ANN, BOB = 1001, 1002


async def test_commands_menu_and_answers_to_what_fits_nothing(
    migrated_pool: asyncpg.Pool, redis_server_url: str
) -> None:
    async with running_bot(migrated_pool, redis_server_url) as bot:
        fake = bot.fake
        names = [c["command"] for c in fake.commands]
        assert {"start", "alfa", "copytrader", "status", "alpha", "follow", "settings"} <= set(names)
        assert "kill" not in names  # admin commands are only shown to admins
        welcome = await fake.reply_to(ANN, "/start")
        assert "The risks, plainly" in welcome.plain and "liquidation" in welcome.plain
        assert (await fake.reply_to(ANN, "🙂 hello?")).plain.startswith("I didn't understand")
        assert "I don't know /dance" in (await fake.reply_to(ANN, "/dance now")).plain
        assert "nothing to cancel" in (await fake.reply_to(ANN, "/cancel")).plain
        assert "for Vanta's operators only" in (await fake.reply_to(ANN, "/kill")).plain
        # A button from a message the bot no longer serves: answered, never left spinning.
        before = len(fake.ok_calls("answerCallbackQuery"))
        fake.press_data(ANN, welcome, "zz:gone")
        await fake.wait_for(lambda: len(fake.ok_calls("answerCallbackQuery")) > before, what="the answer")
        assert "older message" in fake.ok_calls("answerCallbackQuery")[-1].params["text"]


async def test_rate_limit_per_user_answers_once_then_stays_quiet(
    migrated_pool: asyncpg.Pool, redis_server_url: str
) -> None:
    prefix = f"rl:{secrets.token_hex(4)}"
    async with running_bot(migrated_pool, redis_server_url, commands_per_minute=3, rate_prefix=prefix) as bot:
        fake = bot.fake
        for _ in range(3):
            assert "What I can do" in (await fake.reply_to(ANN, "/help")).plain
        assert "faster than I can answer" in (await fake.reply_to(ANN, "/help")).plain
        fake.send_text(ANN, "/help")  # over the limit again: dropped without an answer
        await bot.app.update_processor.wait_processed(fake.pushed)  # type: ignore[attr-defined]
        # Another user is not affected.
        assert "What I can do" in (await fake.reply_to(BOB, "/help")).plain
        ann = [m.plain for m in fake.messages(ANN)]
        assert sum("faster than I can answer" in t for t in ann) == 1 and len(ann) == 4
