"""The real bot `Application` running in the test's event loop against the fake Bot API over HTTP,
with real PostgreSQL and Redis; tests talk to it as users through the fake."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from telegram.ext import Application

from bot.app import build_application
from bot.delivery import DeliveryWorker
from bot.deps import BotDeps
from bot.notices import blocked_handler, renderer
from bot.pace import SendPace
from bot.ratelimit import CommandRateLimit
from bot.runner import run_bot
from data.pairs import Pair, builtin_catalogue
from infra import bus
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "7000000003:AAharnessharnessharnessharnessharn"


@dataclass
class RunningBot:
    fake: FakeTelegram
    app: Application[Any, Any, Any, Any, Any, Any]
    deps: BotDeps
    stop: asyncio.Event
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def running_bot(
    pool: asyncpg.Pool,
    redis_url: str | None,
    *,
    service: Any = None,
    market: Any = None,
    admins: frozenset[int] = frozenset(),
    commands_per_minute: int = 10_000,
    catalogue: dict[int, Pair] | None = None,
    delegate_address: str | None = None,
    chain: Any = None,
    trading_address: str = "",
    deliver: bool = False,
    fake: FakeTelegram | None = None,
    rate_prefix: str = "bot:rl",
) -> AsyncIterator[RunningBot]:
    redis: aioredis.Redis | None = bus.connect(redis_url) if redis_url else None
    own_fake = fake is None
    fake = fake or FakeTelegram(TOKEN)
    if own_fake:
        await fake.start()
    deps = BotDeps(
        pool=pool,
        service=service,
        market=market,
        catalogue=catalogue or builtin_catalogue(),
        admins=admins,
        limiter=CommandRateLimit(redis, commands_per_minute, prefix=rate_prefix),
        delegate_address=delegate_address,
        chain=chain,
        trading_address=trading_address,
    )
    app = build_application(deps, pool, token=fake.token, base_url=fake.base_url)
    worker = None
    if deliver:
        worker = DeliveryWorker(
            pool,
            app.bot,
            SendPace(25, 1.1),
            render=renderer(deps),
            on_blocked=blocked_handler(deps),
            poll_s=0.2,
        )
    stop = asyncio.Event()
    task = asyncio.create_task(run_bot(app, stop, worker=worker, poll_timeout=1))
    try:
        await fake.wait_for(lambda: fake.polls > 0 or task.done(), timeout=60, what="the bot polling")
        if task.done():
            task.result()
        yield RunningBot(fake, app, deps, stop, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        if own_fake:
            await fake.stop()
        if redis is not None:
            await redis.aclose()
