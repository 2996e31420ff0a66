"""The delivery worker against real PostgreSQL and the fake Bot API over HTTP: Telegram's limits
kept (measured at the receiving end), 429 honoured, a blocked bot pauses the user, a notice that
cannot be worded fails alone, a send interrupted by a crash is never repeated and never silently
lost."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from collections.abc import AsyncIterator

import asyncpg
import pytest
from telegram import Bot

from bot import outbox
from bot.delivery import DeliveryWorker
from bot.notices import text_of
from bot.outbox import Notice
from bot.pace import Clock, SendPace
from tests.bot.outbox_fixtures import add_notices, fill, telegram_users
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.integration
TOKEN = "7000000001:AAtesttokentesttokentesttokentest00"


async def _render(notice: Notice) -> str | None:
    return text_of(notice.kind, notice.fields)


@contextlib.asynccontextmanager
async def delivering(
    pool: asyncpg.Pool, fake: FakeTelegram, clock: Clock, blocked: list[int] | None = None
) -> AsyncIterator[DeliveryWorker]:
    async def on_blocked(chat: int) -> None:
        (blocked if blocked is not None else []).append(chat)

    async with Bot(TOKEN, base_url=fake.base_url) as bot:
        worker = DeliveryWorker(
            pool, bot, SendPace(25, 1.1, clock), render=_render, on_blocked=on_blocked, poll_s=0.2
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            yield worker
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


def _sends(fake: FakeTelegram) -> list:
    return fake.ok_calls("sendMessage")


async def test_thousand_notices_to_200_chats_within_telegram_limits(migrated_pool: asyncpg.Pool) -> None:
    """1,000 notices, 5 each to 200 chats, on a clock running 10x faster than real time: the
    limits hold in clock time at the fake's end (≤ 30 in any second, ≥ 1 s apart per chat),
    every notice arrives once, in order per chat."""
    pool = migrated_pool
    clock = Clock(scale=10)
    chats = list(range(500_001, 500_201))
    users = await telegram_users(pool, chats)
    notices = [(users[chats[i % 200]], fill(i)) for i in range(1000)]
    ids = await add_notices(pool, notices)
    async with FakeTelegram(TOKEN, clock=clock.now) as fake:
        for chat in chats:
            fake.open_chat(chat)
        async with delivering(pool, fake, clock):
            await fake.wait_for(lambda: len(_sends(fake)) >= 1000, timeout=240, what="1,000 notices")
    sends = _sends(fake)
    assert len(sends) == 1000
    assert sorted(c.params["text"] for c in sends) == sorted(text_of("fill", f) for _, f in notices)
    times = sorted(c.at for c in sends)
    busiest = max(sum(1 for t in times[i : i + 31] if t < start + 1.0) for i, start in enumerate(times))
    assert busiest <= 30, f"{busiest} messages within one second"
    per_chat: dict[int, list] = defaultdict(list)
    for c in sends:
        per_chat[c.params["chat_id"]].append(c)
    for chat, calls in per_chat.items():
        gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
        assert min(gaps) >= 1.0, f"chat {chat}: two messages {min(gaps):.3f} s apart"
        texts = [c.params["text"] for c in calls]
        expected = [text_of("fill", f) for u, f in notices if u == users[chat]]
        assert texts == expected, f"chat {chat} got its notices out of order"
    rows = await pool.fetch("SELECT id, status, telegram_message_id FROM notifications ORDER BY id")
    assert [r["id"] for r in rows] == ids
    assert {r["status"] for r in rows} == {"sent"} and all(r["telegram_message_id"] for r in rows)


async def test_429_retry_after_holds_everything_back(migrated_pool: asyncpg.Pool) -> None:
    pool = migrated_pool
    clock = Clock(scale=4)
    users = await telegram_users(pool, [600_001, 600_002])
    await add_notices(pool, [(users[600_001], fill(i)) for i in range(3)] + [(users[600_002], fill(9))])
    async with FakeTelegram(TOKEN, clock=clock.now) as fake:
        fake.open_chat(600_001)
        fake.open_chat(600_002)
        fake.inject("sendMessage", chat_id=600_001, code=429, retry_after=3)
        async with delivering(pool, fake, clock):
            await fake.wait_for(lambda: len(_sends(fake)) >= 4, timeout=60, what="all four notices")
    refused = [c for c in fake.calls if c.method == "sendMessage" and not c.ok]
    assert len(refused) == 1
    t = refused[0].at
    # Nothing new goes out for retry_after once the 429 is back; at most the one message that had
    # already passed the gate while the 429 was on its way may land in that window.
    assert len([c for c in _sends(fake) if t < c.at < t + 3.0]) <= 1
    assert min(c.at for c in _sends(fake) if c.params["chat_id"] == 600_001) >= t + 3.0
    got = [c.params["text"] for c in _sends(fake) if c.params["chat_id"] == 600_001]
    assert got == [text_of("fill", fill(i)) for i in range(3)]
    statuses = await pool.fetch("SELECT status, attempts FROM notifications ORDER BY id")
    assert [r["status"] for r in statuses] == ["sent"] * 4
    assert statuses[0]["attempts"] == 2


async def test_a_user_who_blocked_the_bot_is_reported_and_their_notices_fail(
    migrated_pool: asyncpg.Pool,
) -> None:
    pool = migrated_pool
    users = await telegram_users(pool, [700_001, 700_002])
    await add_notices(pool, [(users[700_001], fill(i)) for i in range(3)] + [(users[700_002], fill(7))])
    # A notice its writer got wrong (no amount): failed with the reason, the next one still goes.
    [broken] = await add_notices(pool, [(users[700_002], {"action": "open", "leader": "0x1"})])
    await add_notices(pool, [(users[700_002], fill(8))])
    blocked: list[int] = []
    async with FakeTelegram(TOKEN) as fake:
        fake.open_chat(700_001)
        fake.open_chat(700_002)
        fake.block(700_001)
        async with delivering(pool, fake, Clock(), blocked):
            await fake.wait_for(
                lambda: len(_sends(fake)) == 2 and blocked, timeout=30, what="the block noticed"
            )
    assert blocked == [700_001]
    rows = await pool.fetch(
        "SELECT n.status, n.error FROM notifications n JOIN users u ON u.id = n.user_id "
        "WHERE u.telegram_user_id = 700001"
    )
    assert {r["status"] for r in rows} == {"failed"} and all("blocked" in r["error"] for r in rows)
    attempts = [c for c in fake.calls if c.method == "sendMessage" and c.params["chat_id"] == 700_001]
    assert len(attempts) == 1  # one 403 is enough: the rest are not tried against a blocked chat
    assert [c.params["text"] for c in _sends(fake)] == [text_of("fill", fill(7)), text_of("fill", fill(8))]
    status, error = await pool.fetchrow("SELECT status, error FROM notifications WHERE id = $1", broken)
    assert status == "failed" and "could not be worded" in error


async def test_a_send_interrupted_by_a_crash_is_not_repeated_and_the_user_is_told(
    migrated_pool: asyncpg.Pool,
) -> None:
    pool = migrated_pool
    users = await telegram_users(pool, [800_001])
    first, second = await add_notices(pool, [(users[800_001], fill(1)), (users[800_001], fill(2))])
    # A worker that died between claiming the first notice and hearing back from Telegram.
    assert await outbox.claim(pool, first, "dead-worker")
    async with FakeTelegram(TOKEN) as fake:
        fake.open_chat(800_001)
        async with delivering(pool, fake, Clock()):
            await fake.wait_for(lambda: len(_sends(fake)) >= 2, timeout=30, what="z and the gap notice")
    texts = [c.params["text"] for c in _sends(fake)]
    assert text_of("fill", fill(2)) in texts and text_of("fill", fill(1)) not in texts
    gap = next(t for t in texts if t != text_of("fill", fill(2)))
    assert "may not have reached you" in gap and text_of("fill", fill(1)) in gap
    rows = {r["id"]: r["status"] for r in await pool.fetch("SELECT id, status FROM notifications")}
    assert rows[first] == "unknown" and rows[second] == "sent"
    assert sorted(rows.values()) == ["sent", "sent", "unknown"]
