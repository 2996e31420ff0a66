"""How the engine tells the world being away (retry later, everything) from something about the
orders themselves (isolate them, bound the attempts)."""

from __future__ import annotations

import asyncio

import asyncpg
import redis.exceptions as redis_errors

from execution.venues.base import VenuePending


class SessionLost(ConnectionError):
    """The engine's database session, and the advisory locks it held, are gone: nothing more is
    sent under them. The work in hand is left to the journal and picked up again."""


_TRANSIENT = (
    VenuePending,
    OSError,  # ConnectionError, refused or reset connections
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # a released or closed connection
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
    asyncpg.exceptions.InsufficientResourcesError,
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
)


def transient(exc: BaseException) -> bool:
    """Whether a failure is the world being away (retry later, everything) rather than something
    about the orders themselves (isolate, bound the attempts)."""
    return isinstance(exc, _TRANSIENT)
