"""A local stand-in for Pyth's Hermes: `/v2/updates/price/latest` and the SSE stream
`/v2/updates/price/stream`, answering in Hermes' own JSON (`PriceUpdate`: `binary` + `parsed`,
ids without `0x`, price and conf as integer strings with `expo`, `metadata` with slot and times)
and its own failure modes: 404 "Price ids not found: ..." for an unknown id, `:` keep-alive
comments, `event: error` messages, and streams that end (Hermes closes them after 24 hours).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from aiohttp import web

BTC_FEED = "e62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43"
ETH_FEED = "ff61491a931112ddf1bd8147cd1b641375f79f5825126d665480874634fd0ace"


def price_block(price: Decimal, publish_time: int, expo: int = -8) -> dict[str, object]:
    scale = Decimal(10) ** -expo
    return {
        "price": str(int(price * scale)),
        "conf": str(int(price * scale / 2000)),  # about 5 bp, the order Hermes shows for majors
        "expo": expo,
        "publish_time": publish_time,
    }


def price_update(prices: dict[str, tuple[Decimal, int]], slot: int) -> dict[str, object]:
    """One Hermes `PriceUpdate` for {feed id: (price, publish time)}."""
    parsed = [
        {
            "id": feed,
            "price": price_block(price, ts),
            "ema_price": price_block(price * Decimal("0.9995"), ts),
            "metadata": {"slot": slot, "proof_available_time": ts + 1, "prev_publish_time": ts - 1},
        }
        for feed, (price, ts) in prices.items()
    ]
    # Accumulator update data: "PNAU" magic then opaque bytes; clients parsing JSON ignore it.
    return {"binary": {"encoding": "hex", "data": ["504e4155" + "00" * 40]}, "parsed": parsed}


@dataclass
class FakeHermes:
    url: str
    latest: dict[str, tuple[Decimal, int]]  # what /latest answers, by feed id
    stream_queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    requests: list[str] = field(default_factory=list)
    streams_opened: int = 0
    slot: int = 100

    def push(self, prices: dict[str, tuple[Decimal, int]]) -> None:
        """Send one update to the open stream (and make it the latest)."""
        self.latest.update(prices)
        self.slot += 1
        self.stream_queue.put_nowait("data: " + json.dumps(price_update(prices, self.slot)) + "\n\n")

    def push_raw(self, text: str) -> None:
        self.stream_queue.put_nowait(text)

    def end_stream(self) -> None:
        """Close the current stream the way Hermes does after 24 hours."""
        self.stream_queue.put_nowait(None)


def _ids(request: web.Request) -> list[str]:
    return [i.lower().removeprefix("0x") for i in request.query.getall("ids[]", [])]


@asynccontextmanager
async def hermes_server(latest: dict[str, tuple[Decimal, int]]) -> AsyncIterator[FakeHermes]:
    fake = FakeHermes(url="", latest=dict(latest))

    def missing(ids: list[str]) -> web.Response | None:
        unknown = [i for i in ids if i not in fake.latest]
        if unknown:
            return web.Response(status=404, text="Price ids not found: " + ", ".join(unknown))
        return None

    async def latest_route(request: web.Request) -> web.Response:
        fake.requests.append(str(request.rel_url))
        ids = _ids(request)
        if (error := missing(ids)) is not None:
            return error
        fake.slot += 1
        body = price_update({i: fake.latest[i] for i in ids}, fake.slot)
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def stream_route(request: web.Request) -> web.StreamResponse:
        fake.requests.append(str(request.rel_url))
        if (error := missing(_ids(request))) is not None:
            return error
        fake.streams_opened += 1
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        await response.write(b":\n\n")  # axum's keep-alive comment
        while True:
            item = await fake.stream_queue.get()
            if item is None:
                break
            await response.write(item.encode())
        return response

    app = web.Application()
    app.router.add_get("/v2/updates/price/latest", latest_route)
    app.router.add_get("/v2/updates/price/stream", stream_route)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        fake.end_stream()
        await runner.cleanup()
