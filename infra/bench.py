"""Benchmarks of the plumbing itself: the Redis stream round trip and embedded start-up."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from infra import bus, embedded


async def _stream_roundtrip(url: str, n: int) -> dict[str, float]:
    client = bus.connect(url)
    stream = bus.StreamBus(client, stream=f"bench:{time.time_ns()}")
    await stream.ensure_group("g")
    started = time.perf_counter()
    for start in range(0, n, 500):
        await stream.publish_many([{"event_id": str(i)} for i in range(start, min(n, start + 500))])
    published = time.perf_counter()
    seen = 0
    while seen < n:
        msgs = await stream.read("g", "c", count=1000, block_ms=100)
        await stream.ack("g", *[m.id for m in msgs])
        seen += len(msgs)
    done = time.perf_counter()
    await client.delete(stream.stream)
    await client.aclose()
    return {
        "bus_publish_per_s": round(n / (published - started)),
        "bus_consume_ack_per_s": round(n / (done - published)),
    }


def run() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        url = embedded.embedded_redis_url(Path(tmp))
        redis_start = time.perf_counter() - started
        try:
            figures = asyncio.run(_stream_roundtrip(url, 20_000))
        finally:
            embedded.stop_embedded_redis(Path(tmp))
    figures["embedded_redis_start_s"] = round(redis_start, 3)
    return figures
