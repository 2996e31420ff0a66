"""Opening the real components a service needs: PostgreSQL (pool) and Redis, embedded or external."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from infra import bus, db, embedded
from infra.settings import Settings


@dataclass
class Services:
    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis | None
    database_url: str
    redis_url: str | None

    def describe(self) -> dict[str, str]:
        """Where each component lives, without credentials."""
        return {
            "postgres": "external" if self.settings.database_url else "embedded",
            "redis": "none"
            if self.redis_url is None
            else ("external" if self.settings.redis_url else "embedded"),
        }


@asynccontextmanager
async def open_services(
    settings: Settings, *, with_redis: bool = True, migrate: bool = True
) -> AsyncIterator[Services]:
    database_url = embedded.database_url(settings)
    pool = await db.create_pool(database_url)
    redis_url = embedded.redis_url(settings) if with_redis else None
    client = bus.connect(redis_url) if redis_url else None
    try:
        if migrate:
            async with pool.acquire() as conn:
                await db.migrate(conn)
        if client is not None:
            await client.ping()
        yield Services(settings, pool, client, database_url, redis_url)
    finally:
        if client is not None:
            await client.aclose()
        await pool.close()


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, for services that finish their current step and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
