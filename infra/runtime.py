"""Opening the real components a service needs (PostgreSQL pool and Redis, embedded or external),
and stopping a service promptly on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra import db, embedded
from infra.errors import Unreachable
from infra.logs import log_fields, mask_url
from infra.settings import Settings

if TYPE_CHECKING:  # Redis is imported when a command asks for it (`vanta stats` does not)
    import asyncpg
    import redis.asyncio as aioredis

log = logging.getLogger("vanta.runtime")

# After SIGINT/SIGTERM a service has this long to finish its step and return by itself; then its
# main task is cancelled (interrupting any wait, retry or backoff); if it still runs at the hard
# deadline the process exits. Together: every service is gone within 5 s of the signal.
STOP_GRACE_S = 2.5
STOP_HARD_DEADLINE_S = 4.5

stop_requested = threading.Event()  # set once a stop signal arrived (the CLI exits 0 on it)


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
    """The pool (migrated unless told not to) and the Redis client. A server that cannot be
    reached is an `Unreachable` error naming it (masked) and the cause."""
    database_url = embedded.database_url(settings)
    pool = await db.create_pool(database_url)
    redis_url = embedded.redis_url(settings) if with_redis else None
    client = None
    if redis_url:
        from infra import bus

        client = bus.connect(redis_url)
    try:
        if migrate:
            async with pool.acquire() as conn:
                await db.migrate(conn)
        if client is not None:
            import redis.exceptions as redis_errors

            assert redis_url is not None
            try:
                await client.ping()
            except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
                raise Unreachable(f"cannot reach Redis at {mask_url(redis_url)}: {exc}") from exc
        yield Services(settings, pool, client, database_url, redis_url)
    finally:
        if client is not None:
            await client.aclose()
        try:
            # Gracefully, but never for long: after a stop signal or a server outage there may
            # be nobody left to answer.
            await asyncio.wait_for(pool.close(), 3)
        except (TimeoutError, asyncio.CancelledError):
            pool.terminate()


def stop_on_signals(
    *, grace_s: float = STOP_GRACE_S, hard_deadline_s: float = STOP_HARD_DEADLINE_S
) -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, for services that finish their current step and stop.

    Call it from the service's main task (the coroutine given to `asyncio.run`). If the service
    has not returned `grace_s` after the first signal (stuck in a retry, a long RPC call, a
    backoff), its main task is cancelled; a second signal cancels it at once; and at
    `hard_deadline_s` the process exits whatever it is doing, logging that it had to.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def cancel_main() -> None:
        if main is not None and not main.done():
            log.warning("service did not stop in time; cancelling it")
            main.cancel()

    def hard_exit() -> None:
        log.error("service still running past the stop deadline; exiting now")
        logging.shutdown()
        os._exit(1)

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            cancel_main()
            return
        log.info("stop requested", extra=log_fields(signal=sig.name))
        stop_requested.set()
        stop.set()
        loop.call_later(grace_s, cancel_main)
        timer = threading.Timer(hard_deadline_s, hard_exit)
        timer.daemon = True
        timer.start()
        if main is not None:
            main.add_done_callback(lambda _task: timer.cancel())

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    return stop
