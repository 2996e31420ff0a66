"""The serving client against a local server that fails in every way a service can: the answer is
the service's, or an explicit Unknown, never a guess."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from serving.client import ServingClient, ServingRequestError, Unknown
from tests.servers import free_port

REGIME = {
    "pair": "BTC/USD",
    "color": "red",
    "volatility_1h": 0.012,
    "trend": "bearish",
    "confidence": 0.91,
    "as_of": 1_763_000_000,
    "model": "vanta_regime:abc",
}


@asynccontextmanager
async def serving_stub(replies: list[tuple[int, object] | float]) -> AsyncIterator[tuple[str, list[dict]]]:
    """Answers each POST with the next reply: (status, body), or a float = hang that many seconds."""
    seen: list[dict] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "body": await request.json()})
        reply = replies[min(len(seen), len(replies)) - 1]
        if isinstance(reply, float):
            await asyncio.sleep(reply)
            reply = (200, [REGIME])
        status, body = reply
        return web.Response(status=status, text=json.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_post("/{route}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_an_answer_is_parsed_into_its_model_after_transient_failures() -> None:
    async with serving_stub([(503, {"error": "not ready"}), (500, {}), (200, [REGIME])]) as (url, seen):
        async with ServingClient(url, attempts=3, backoff_s=0.01) as client:
            [state] = await client.regime("BTC/USD")  # type: ignore[misc]
    assert state.color == "red" and state.confidence == 0.91
    assert [s["body"] for s in seen] == [{"pair": "BTC/USD"}] * 3


async def test_no_answer_is_unknown_with_its_reason_never_a_default() -> None:
    async with serving_stub([(500, {"error": "boom"})]) as (url, seen):
        async with ServingClient(url, attempts=2, backoff_s=0.01) as client:
            answer = await client.regime()
    assert isinstance(answer, Unknown) and "HTTP 500" in answer.reason
    assert len(seen) == 2

    async with ServingClient(f"http://127.0.0.1:{free_port()}", attempts=2, backoff_s=0.01) as client:
        down = await client.leaderboard()
    assert isinstance(down, Unknown) and "ConnectError" in down.reason

    async with serving_stub([5.0]) as (url, _):
        async with ServingClient(url, timeout_s=0.2, attempts=1) as client:
            slow = await client.regime()
    assert isinstance(slow, Unknown) and "Timeout" in slow.reason

    async with serving_stub([(200, [{"pair": "BTC/USD", "color": "purple"}])]) as (url, _):
        async with ServingClient(url) as client:
            garbled = await client.regime()
    assert isinstance(garbled, Unknown) and "unreadable reply" in garbled.reason


async def test_a_malformed_request_raises_and_an_unknown_trader_is_none() -> None:
    async with serving_stub([(400, {"error": "1 validation error"}), (404, {"error": "no trades"})]) as (
        url,
        _,
    ):
        async with ServingClient(url) as client:
            with pytest.raises(ServingRequestError, match="HTTP 400"):
                await client.leaderboard(page_size=10_000)
            assert await client.trader("0xabc") is None
