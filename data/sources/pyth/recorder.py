"""Pyth prices into `market_prices`: the latest price first, then the live stream, sampled.

Hermes pushes a price every ~400 ms per feed; the regime needs hourly volatility and 4-hour
momentum, so one sample per pair every `sample_every_s` keeps the table small without losing
anything the model reads.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import httpx

from data.prices import PriceSample, store_prices
from data.sources.pyth.hermes import HermesClient, PythFeeds, PythPrice
from infra.logs import log_fields
from infra.metrics import counter

log = logging.getLogger("vanta.pyth")

STORED = counter("vanta_pyth_samples_stored_total", "Pyth price samples written to market_prices")
SOURCE = "pyth"


class PriceSampler:
    """Keeps one price per pair per interval (the first one seen in it)."""

    def __init__(self, feeds: PythFeeds, every_s: int):
        self.feeds = feeds
        self.every_s = every_s
        self._last: dict[str, int] = {}

    def keep(self, prices: list[PythPrice]) -> list[PriceSample]:
        kept = []
        for p in prices:
            pair = self.feeds.symbol(p.feed_id)
            if pair is None:
                continue
            bucket = p.publish_time // self.every_s
            if self._last.get(pair) == bucket:
                continue
            self._last[pair] = bucket
            kept.append(PriceSample(pair, SOURCE, p.publish_time, p.price, p.conf))
        return kept


async def record_prices(
    pool: asyncpg.Pool,
    hermes: HermesClient,
    feeds: PythFeeds,
    stop: asyncio.Event,
    *,
    sample_every_s: int = 10,
) -> int:
    """Run until `stop`; returns how many samples were stored. An unreachable Hermes is waited for;
    an unknown feed id (`HermesError`) is a configuration error and ends the recording."""
    sampler = PriceSampler(feeds, sample_every_s)
    stored = 0

    async def save(prices: list[PythPrice]) -> None:
        nonlocal stored
        samples = sampler.keep(prices)
        if samples:
            async with pool.acquire() as conn:
                n = await store_prices(conn, samples)
            stored += n
            STORED.inc(n)

    try:
        await save(await hermes.latest(feeds.ids()))
    except httpx.HTTPError as exc:  # unreachable now: the stream below retries until it is back
        log.warning(
            "Hermes latest prices unavailable", extra=log_fields(error=f"{type(exc).__name__}: {exc}")
        )
    log.info("recording Pyth prices", extra=log_fields(pairs=sorted(feeds.by_symbol), every_s=sample_every_s))
    async for prices in hermes.stream(feeds.ids(), stop):
        await save(prices)
    return stored
