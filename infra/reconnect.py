"""Riding out a PostgreSQL or Redis restart: retry a unit of work with backoff until the server is back.

Long-running services (the tracker, the indexer's tail, the copy engine) must not die, nor go
quietly idle, when a server they use restarts. The pattern is the same everywhere:

    await with_reconnect(lambda: work(...), what="tracker flush", stop=stop)

`work` is a whole unit of work that is safe to run again: it acquires its pool connection inside
(asyncpg replaces connections the server closed on the next acquire), does its transaction, and
publishes or acks afterwards (stream delivery is at-least-once and consumers dedupe by event id,
so a repeat is harmless). A failure that only means "the server is not there right now" is
retried with exponential backoff (tenacity), forever for services or up to `give_up_after_s` for
one-shot commands; any other exception propagates at once. The wait between attempts ends early
when `stop` is set, raising `Stopped`, so SIGTERM is honoured mid-outage. An outage is logged
once when it starts (with the cause) and once when it ends (with its length), and
`vanta_dependency_up{what}` is 0 while it lasts.

A connection-level advisory lock does not survive a restart (the session that held it is gone):
code that relies on one must take it again after `with_reconnect` returns from an outage, e.g.
by acquiring it inside the unit of work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import redis.exceptions as redis_errors
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_delay, stop_never
from tenacity.wait import wait_exponential_jitter

from infra.logs import log_fields
from infra.metrics import gauge

log = logging.getLogger("vanta.reconnect")
T = TypeVar("T")

DEPENDENCY_UP = gauge(
    "vanta_dependency_up", "1 while the named unit of work reaches its servers, 0 during an outage", ("what",)
)

_POSTGRES_GONE = (
    asyncpg.PostgresConnectionError,  # connection lost, refused, does not exist
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


class Stopped(Exception):
    """`stop` was set while waiting for a server to come back."""


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` means a server is unreachable right now (retry later), not a bug or bad data."""
    if isinstance(exc, redis_errors.AuthenticationError | redis_errors.AuthorizationError):
        return False  # wrong credentials do not heal with time
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return True  # includes BusyLoadingError: Redis is reading its dump after a restart
    if isinstance(exc, _POSTGRES_GONE):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return "connection is closed" in str(exc) or "connection was closed" in str(exc)
    return isinstance(exc, ConnectionError | TimeoutError | OSError)


async def sleep_unless_stopped(stop: asyncio.Event | None, seconds: float) -> bool:
    """Sleep up to `seconds`; return True (early) if `stop` is set."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def with_reconnect(
    work: Callable[[], Awaitable[T]],
    *,
    what: str,
    stop: asyncio.Event | None = None,
    give_up_after_s: float | None = None,
    backoff_max_s: float = 5.0,
) -> T:
    """Run `work()`, rerunning it while it fails because PostgreSQL or Redis is unreachable.

    Backoff starts at 0.1 s and doubles (with jitter) up to `backoff_max_s`. Retries forever
    unless `give_up_after_s` is given (then the last error is raised). Raises `Stopped` if `stop`
    is set while waiting. Non-transient exceptions are raised at once.
    """
    outage_started: float | None = None

    async def wait_or_stop(seconds: float) -> None:
        if await sleep_unless_stopped(stop, seconds):
            raise Stopped(what)

    def note_failure(state: RetryCallState) -> None:
        nonlocal outage_started
        exc = state.outcome.exception() if state.outcome else None
        DEPENDENCY_UP.labels(what=what).set(0)
        if outage_started is None:
            outage_started = time.monotonic()
            log.warning(
                "server unreachable; retrying with backoff",
                extra=log_fields(what=what, error=describe(exc) if exc else None),
            )

    async for attempt in AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(multiplier=0.1, max=backoff_max_s, jitter=0.1),
        stop=stop_never if give_up_after_s is None else stop_after_delay(give_up_after_s),
        sleep=wait_or_stop,
        before_sleep=note_failure,
        reraise=True,
    ):
        with attempt:
            result = await work()
    DEPENDENCY_UP.labels(what=what).set(1)
    if outage_started is not None:
        log.warning(
            "server reachable again; carrying on",
            extra=log_fields(what=what, outage_s=round(time.monotonic() - outage_started, 2)),
        )
    return result
