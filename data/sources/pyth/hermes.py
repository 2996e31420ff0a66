"""Prices from Pyth's Hermes service: `GET /v2/updates/price/latest` and the server-sent-events
stream `GET /v2/updates/price/stream`, both with `ids[]=<feed id>` repeated and `parsed=true`.

Wire format (Hermes' `PriceUpdate`, apps/hermes/server/src/api/types.rs in pyth-crosschain):

    {"binary": {"encoding": "hex", "data": ["504e41..."]},
     "parsed": [{"id": "e62df6c8...",                       # 32 bytes hex, no 0x prefix
                 "price": {"price": "6512345678901", "conf": "3123456789", "expo": -8,
                           "publish_time": 1763000000},
                 "ema_price": {... same four fields ...},
                 "metadata": {"slot": 123, "proof_available_time": 1763000001,
                              "prev_publish_time": 1763000000}}]}

Price and confidence are integers sent as strings (an i64 would lose digits as a JSON number);
the real value is `price × 10^expo`, kept exact as a Decimal. The stream sends one such object
per `data:` line, `:` comment lines as keep-alives (about every 15 s), and `event: error` events
whose data is a message, not JSON. Hermes ends a stream after 24 hours, so the reader reconnects
whenever a stream ends or fails, with backoff. An unknown feed id is a 404 "Price ids not found".
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from infra.logs import log_fields
from infra.metrics import counter

log = logging.getLogger("vanta.pyth")

UPDATES = counter("vanta_pyth_updates_total", "Parsed Pyth price updates received", ("path",))
STREAM_RECONNECTS = counter("vanta_pyth_stream_reconnects_total", "Hermes price stream reconnections")
STREAM_ERRORS = counter("vanta_pyth_stream_errors_total", "`event: error` messages on the Hermes stream")


class HermesError(RuntimeError):
    """Hermes answered something we cannot use (unknown feed, wrong shape): retrying will not help."""


def normalize_feed_id(feed_id: str) -> str:
    """Hermes prints ids as 64 lower-case hex digits without `0x`; settings may carry the prefix."""
    text = feed_id.strip().lower().removeprefix("0x")
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise HermesError(f"not a 32-byte hex Pyth feed id: {feed_id!r}")
    return text


@dataclass(frozen=True)
class PythPrice:
    feed_id: str  # normalized: 64 hex digits, no 0x
    price: Decimal  # price × 10^expo, exact
    conf: Decimal
    publish_time: int  # unix seconds
    ema_price: Decimal
    slot: int | None = None


def _scaled(block: Mapping[str, Any], field: str, where: str) -> tuple[Decimal, Decimal, int]:
    try:
        expo = int(block["expo"])
        price = Decimal(int(str(block["price"]))).scaleb(expo)
        conf = Decimal(int(str(block["conf"]))).scaleb(expo)
        published = int(block["publish_time"])
    except (KeyError, TypeError, ValueError) as exc:
        raise HermesError(f"{where}.{field}: missing or malformed price field ({exc!r})") from None
    return price, conf, published


def parse_price_update(doc: Any) -> list[PythPrice]:
    """The `parsed` entries of one Hermes `PriceUpdate` as exact prices."""
    if not isinstance(doc, dict) or not isinstance(doc.get("parsed"), list):
        raise HermesError("price update: expected an object with a 'parsed' list (was parsed=true sent?)")
    prices = []
    for i, item in enumerate(doc["parsed"]):
        where = f"parsed[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("price"), dict):
            raise HermesError(f"{where}: expected an object with 'id', 'price' and 'ema_price'")
        price, conf, published = _scaled(item["price"], "price", where)
        ema, _, _ = _scaled(item.get("ema_price") or {}, "ema_price", where)
        metadata = item.get("metadata") or {}
        prices.append(
            PythPrice(
                feed_id=normalize_feed_id(str(item.get("id", ""))),
                price=price,
                conf=conf,
                publish_time=published,
                ema_price=ema,
                slot=metadata.get("slot"),
            )
        )
    return prices


class PythFeeds:
    """Pair symbols (`BTC/USD`) to Pyth feed ids and back, from `PYTH_PRICE_FEED_IDS_JSON`."""

    def __init__(self, by_symbol: Mapping[str, str]):
        self.by_symbol = {symbol: normalize_feed_id(fid) for symbol, fid in by_symbol.items()}
        self.by_feed = {fid: symbol for symbol, fid in self.by_symbol.items()}

    def __bool__(self) -> bool:
        return bool(self.by_symbol)

    def ids(self) -> list[str]:
        return list(self.by_feed)

    def symbol(self, feed_id: str) -> str | None:
        return self.by_feed.get(normalize_feed_id(feed_id))


class HermesClient:
    """Hermes over HTTP. `latest` raises `httpx.HTTPError` on transport failures (callers retry);
    `stream` never gives up: it reconnects until `stop` is set."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, keepalive_timeout_s: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s)
        # The stream is quiet between updates except for keep-alives; silence longer than this
        # means the connection is dead even if TCP has not noticed.
        self.keepalive_timeout_s = keepalive_timeout_s

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> HermesClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @staticmethod
    def _params(feed_ids: Iterable[str]) -> list[tuple[str, str]]:
        ids = [normalize_feed_id(f) for f in feed_ids]
        if not ids:
            raise HermesError("no Pyth feed ids to ask for (PYTH_PRICE_FEED_IDS_JSON is empty)")
        return [("ids[]", f) for f in ids] + [("parsed", "true")]

    async def latest(self, feed_ids: Iterable[str]) -> list[PythPrice]:
        reply = await self.http.get("/v2/updates/price/latest", params=self._params(feed_ids))
        if reply.status_code == 404:
            raise HermesError(f"Hermes: {reply.text.strip()[:300]}")
        reply.raise_for_status()
        prices = parse_price_update(reply.json())
        UPDATES.labels("latest").inc(len(prices))
        return prices

    async def stream(self, feed_ids: Iterable[str], stop: asyncio.Event) -> AsyncIterator[list[PythPrice]]:
        """Each update as it arrives, across reconnections, until `stop` is set."""
        params = self._params(feed_ids)
        delay = 0.5
        while not stop.is_set():
            try:
                async for prices in self._one_stream(params):
                    delay = 0.5
                    yield prices
                    if stop.is_set():
                        return
                log.info("Hermes price stream ended; reconnecting")
            except HermesError:
                raise
            except (httpx.HTTPError, TimeoutError) as exc:
                log.warning(
                    "Hermes price stream failed; reconnecting",
                    extra=log_fields(error=f"{type(exc).__name__}: {exc}", retry_in_s=delay),
                )
            STREAM_RECONNECTS.inc()
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return
            except TimeoutError:
                delay = min(delay * 2, 30.0)

    async def _one_stream(self, params: list[tuple[str, str]]) -> AsyncIterator[list[PythPrice]]:
        timeout = httpx.Timeout(self.http.timeout.connect, read=self.keepalive_timeout_s)
        async with self.http.stream(
            "GET", "/v2/updates/price/stream", params=params, timeout=timeout
        ) as reply:
            if reply.status_code == 404:
                raise HermesError(f"Hermes: {(await reply.aread()).decode(errors='replace').strip()[:300]}")
            reply.raise_for_status()
            async for event, data in _sse_events(reply.aiter_lines()):
                if event == "error":
                    STREAM_ERRORS.inc()
                    log.warning("Hermes stream error event", extra=log_fields(message=data[:300]))
                    continue
                try:
                    prices = parse_price_update(json.loads(data))
                except (json.JSONDecodeError, HermesError) as exc:
                    STREAM_ERRORS.inc()
                    log.warning("unreadable Hermes stream message", extra=log_fields(error=str(exc)))
                    continue
                UPDATES.labels("stream").inc(len(prices))
                yield prices


async def _sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """Server-sent events as (event type, data): `data:` lines joined by newlines, dispatched on a
    blank line; `:` comments (keep-alives), `id:` and `retry:` are ignored."""
    event, data = "message", []
    async for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value or "message"
    # An event not terminated by a blank line is incomplete (the stream was cut): dropped, per spec.
