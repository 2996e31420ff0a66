"""`vanta bench` figures of the bot:

- `bot_command_p50_ms`, `bot_command_p99_ms`: `/alfa` from the moment the update is offered to the
  bot (a user's message waiting in the Bot API's getUpdates) to the moment the fake Bot API
  receives the leaderboard's sendMessage: the long poll, python-telegram-bot, the rate limit in
  Redis, the serving client's leaderboard call over HTTP to the real BentoML service, the text
  and keyboard, the sendMessage over HTTP; 20 users, one after the other.

The Bot API is the tests' fake (real HTTP, the real JSON), imported from the checkout's
`tests/fakes`; the AI service is the one at SERVING_URL when it answers, else the serving layer's
benchmark service (a simulated population, models fitted on it) started here.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROUNDS = 200
WARMUP = 10
USERS = 20
TOKEN = "7000000009:AAbenchbenchbenchbenchbenchbenchbenc"


def _fake_bot_api() -> Any:
    root = Path(__file__).resolve().parent.parent
    if not (root / "tests" / "fakes" / "telegram_api.py").exists():
        raise RuntimeError(f"the bot benchmark needs the checkout's tests/fakes (not found under {root})")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from tests.fakes import telegram_api

    return telegram_api


@asynccontextmanager
async def _serving_url() -> AsyncIterator[str]:
    from infra.settings import get_settings
    from serving.client import ServingClient, Unknown

    url = get_settings().serving_url
    async with ServingClient(url, timeout_s=2, attempts=1) as client:
        health = await client.health()
    if not isinstance(health, Unknown) and health.ready:
        yield url
        return
    from serving.bench import bench_service

    async with bench_service() as (service, _cold_start_s):
        yield service.url


async def _run() -> dict[str, float]:
    from bot.app import build_application
    from bot.deps import BotDeps
    from bot.ratelimit import CommandRateLimit
    from bot.runner import run_bot
    from data.pairs import load_catalogue
    from execution.copy.service import CopyService
    from infra import bus, db, embedded
    from infra.settings import get_settings
    from serving.client import ServingClient

    api = _fake_bot_api()
    settings = get_settings()
    catalogue = load_catalogue(settings.shared_data_dir / "avantis" / "trading_snapshot.json")
    redis = bus.connect(embedded.redis_url(settings))
    async with _serving_url() as serving_url, db.scratch_database(embedded.database_url(settings)) as url:
        pool = await db.create_pool(url, max_size=8)
        market = ServingClient(serving_url, timeout_s=10)
        fake = api.FakeTelegram(TOKEN)
        await fake.start()
        deps = BotDeps(
            pool=pool,
            service=CopyService(pool, redis, settings, catalogue),
            market=market,
            catalogue=catalogue,
            admins=frozenset(),
            limiter=CommandRateLimit(redis, 10**9, prefix=f"bench:{time.time_ns()}"),
        )
        app = build_application(deps, pool, token=TOKEN, base_url=fake.base_url)
        stop = asyncio.Event()
        task = asyncio.create_task(run_bot(app, stop, poll_timeout=10))
        try:
            await fake.wait_for(lambda: fake.polls > 0, timeout=60, what="the bot polling")
            latencies = []
            for i in range(WARMUP + ROUNDS):
                user = 90_000 + i % USERS
                before = len(fake.messages(user))
                started = time.monotonic()  # the fake's clock: its calls are stamped with it
                fake.send_text(user, "/alfa")
                await fake.wait_for(
                    lambda u=user, b=before: len(fake.messages(u)) > b, timeout=60, what="/alfa"
                )
                answer = fake.last(user)
                if "AI leaderboard" not in answer.plain:
                    raise RuntimeError(f"/alfa did not answer with the leaderboard: {answer.plain[:200]}")
                if i >= WARMUP:
                    latencies.append((answer.at - started) * 1000)
        finally:
            stop.set()
            await task
            await fake.stop()
            await market.close()
            await pool.close()
    await redis.aclose()
    latencies.sort()
    return {
        "bot_command_p50_ms": round(statistics.median(latencies), 1),
        "bot_command_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 1),
        "bot_command_n": len(latencies),
    }


def run() -> Any:
    return _run()
