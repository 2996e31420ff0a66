"""The engine on the event stream: a consumer group shared by every engine of a venue, messages
handled in order and acked only once their copies are in the journal, stale ones claimed from
dead engines, and unfinished intents swept up between reads.

Redis going away (a restart, a network cut) is waited out with backoff, and a consumer group lost
with Redis's data is made again from the stream's start: replaying is safe, every intent id is
deterministic. PostgreSQL going away stops the handling of messages, which stay pending until it
is back; the journal already holds every intent written before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import redis.exceptions as redis_errors

from data.events import TradeEvent
from execution.copy.errors import transient
from infra.bus import Message, StreamBus
from infra.logs import log_fields

if TYPE_CHECKING:
    from execution.copy.engine import CopyEngine

log = logging.getLogger("vanta.copy")


class Backoff:
    """Waits that double up to a ceiling, cut short by `stop`."""

    def __init__(self, stop: asyncio.Event, first_s: float = 0.2, most_s: float = 5.0):
        self.stop, self.first_s, self.most_s = stop, first_s, most_s
        self.delay = first_s

    def reset(self) -> None:
        self.delay = self.first_s

    async def wait(self) -> float:
        waited = self.delay
        try:
            await asyncio.wait_for(self.stop.wait(), waited)
        except TimeoutError:
            pass
        self.delay = min(self.delay * 2, self.most_s)
        return waited


async def consume(engine: CopyEngine, stop: asyncio.Event, *, start_id: str = "$") -> None:
    """Consume the stream until `stop`. Redis or PostgreSQL going away is waited out with
    backoff; nothing is lost meanwhile: unacked messages stay pending, and the journal holds
    every intent already written."""
    if engine.redis is None:
        raise RuntimeError("the engine needs Redis for the event stream")
    bus = StreamBus(engine.redis, engine.config.stream)
    backoff = Backoff(stop)
    joined_once = joined = False
    next_sweep = 0.0
    while not stop.is_set():
        try:
            if not joined:
                await _join(engine, bus, start_id, first=not joined_once)
                joined = joined_once = True
                start_id = "0"  # a group lost with Redis's data is made again from the start
            if time.monotonic() >= next_sweep:
                await engine.sweep()
                next_sweep = time.monotonic() + engine.config.claim_idle_ms / 1000
            msgs = await bus.claim_stale(
                engine.config.group, engine.config.consumer, min_idle_ms=engine.config.claim_idle_ms
            )
            msgs += await bus.read(engine.config.group, engine.config.consumer, count=20, block_ms=200)
            if await _handle(engine, bus, msgs, stop):
                backoff.reset()
            else:
                await backoff.wait()
        except redis_errors.RedisError as exc:
            if "NOGROUP" in str(exc):
                joined = False
            log.warning(
                "event stream unavailable; retrying",
                extra=log_fields(error=f"{type(exc).__name__}: {exc}"[:200], retry_in_s=backoff.delay),
            )
            await backoff.wait()
        except Exception:
            log.exception("copy engine step failed; retrying")
            await backoff.wait()


async def _join(engine: CopyEngine, bus: StreamBus, start_id: str, *, first: bool) -> None:
    await bus.ensure_group(engine.config.group, start_id)
    engine.bus = bus
    if first:
        # A restarted engine prices the intents it recovers from the stream's recent fills,
        # not from nothing.
        await engine.seed_prices()
    log.info(
        "copy engine consuming" if first else "copy engine rejoined the stream",
        extra=log_fields(consumer=engine.config.consumer, venue=engine.venue.name),
    )


async def _handle(engine: CopyEngine, bus: StreamBus, msgs: list[Message], stop: asyncio.Event) -> bool:
    """Handle and ack messages in order; False when the database is away (the rest wait)."""
    observe = getattr(engine.feed, "observe", None)
    for msg in msgs:
        if stop.is_set():
            return True  # unacked: another engine (or the next start) takes them
        try:
            event = TradeEvent.from_record(msg.payload)
        except Exception as exc:
            log.error("unreadable event skipped", extra=log_fields(message=msg.id, error=str(exc)[:200]))
            await bus.ack(engine.config.group, msg.id)
            continue
        if observe is not None:
            observe(event)
        try:
            await engine.handle(event)
        except Exception as exc:
            if transient(exc):
                log.warning(
                    "copy of an event postponed; it stays pending",
                    extra=log_fields(event=event.event_id, error=f"{type(exc).__name__}: {exc}"[:200]),
                )
                return False
            log.exception("copy of an event failed; it stays pending", extra=log_fields(event=event.event_id))
            continue
        await bus.ack(engine.config.group, msg.id)
    return True
