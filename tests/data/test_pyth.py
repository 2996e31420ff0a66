"""Pyth Hermes: latest prices and the SSE stream, against a local server speaking Hermes' JSON."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import asyncpg
import pytest

from data.events import EventKind, Side, TradeEvent
from data.pairs import builtin_catalogue
from data.prices import price_history
from data.sources.pyth.hermes import HermesClient, HermesError, PythFeeds, parse_price_update
from data.sources.pyth.recorder import record_prices
from data.store import insert_events
from tests.fakes.pyth_hermes import BTC_FEED, ETH_FEED, hermes_server, price_update
from tests.waiting import until

T0 = 1_763_000_000
FEEDS = PythFeeds({"BTC/USD": "0x" + BTC_FEED, "ETH/USD": ETH_FEED.upper()})


def test_a_price_update_is_read_exactly_with_its_exponent() -> None:
    doc = price_update({BTC_FEED: (Decimal("91234.56789012"), T0)}, slot=7)
    doc["parsed"][0]["price"]["expo"] = -5  # same digits, another exponent: another price
    [p] = parse_price_update(doc)
    assert p.feed_id == BTC_FEED
    assert p.price == Decimal("91234.56789012") * 1000  # 9123456789012 × 10^-5, exact
    assert p.publish_time == T0 and p.slot == 7


def test_a_malformed_update_names_the_field_at_fault() -> None:
    doc = price_update({BTC_FEED: (Decimal(1), T0)}, slot=1)
    del doc["parsed"][0]["price"]["expo"]
    with pytest.raises(HermesError, match=r"parsed\[0\]\.price"):
        parse_price_update(doc)
    with pytest.raises(HermesError, match="parsed=true"):
        parse_price_update({"binary": {"encoding": "hex", "data": []}})
    with pytest.raises(HermesError, match="feed id"):
        PythFeeds({"BTC/USD": "0x1234"})


async def test_latest_prices_by_pair_and_an_unknown_feed_is_an_error_naming_it() -> None:
    async with hermes_server(
        {BTC_FEED: (Decimal("91000.5"), T0), ETH_FEED: (Decimal("3100.25"), T0)}
    ) as fake:
        async with HermesClient(fake.url) as hermes:
            prices = await hermes.latest(FEEDS.ids())
            assert {FEEDS.symbol(p.feed_id): p.price for p in prices} == {
                "BTC/USD": Decimal("91000.5"),
                "ETH/USD": Decimal("3100.25"),
            }
            assert "ids%5B%5D=" + BTC_FEED in fake.requests[0] and "parsed=true" in fake.requests[0]
            unknown = "ab" * 32
            with pytest.raises(HermesError, match=f"Price ids not found: {unknown}"):
                await hermes.latest([unknown])


async def test_the_stream_skips_keepalives_and_error_events_and_survives_its_end() -> None:
    async with hermes_server({BTC_FEED: (Decimal(90_000), T0)}) as fake:
        stop = asyncio.Event()
        got: list[Decimal] = []
        async with HermesClient(fake.url) as hermes:

            async def consume() -> None:
                async for prices in hermes.stream([BTC_FEED], stop):
                    got.extend(p.price for p in prices)
                    if len(got) == 3:
                        stop.set()

            task = asyncio.create_task(consume())
            fake.push({BTC_FEED: (Decimal(90_001), T0 + 1)})
            fake.push_raw(":\n\n")  # keep-alive
            fake.push_raw("event: error\ndata: Error receiving update: Lagged(3)\n\n")
            fake.push({BTC_FEED: (Decimal(90_002), T0 + 2)})
            fake.end_stream()  # Hermes closes streams after 24 h: the client reconnects
            await until(lambda: fake.streams_opened == 2, what="the stream to reopen")
            fake.push({BTC_FEED: (Decimal(90_003), T0 + 3)})
            await asyncio.wait_for(task, 30)
    assert got == [Decimal(90_001), Decimal(90_002), Decimal(90_003)]
    assert fake.streams_opened == 2


@pytest.mark.integration
async def test_recorded_samples_and_fills_make_one_price_history(migrated_pool: asyncpg.Pool) -> None:
    async with hermes_server({BTC_FEED: (Decimal(90_000), T0), ETH_FEED: (Decimal(3_000), T0)}) as fake:
        stop = asyncio.Event()
        async with HermesClient(fake.url) as hermes:
            task = asyncio.create_task(record_prices(migrated_pool, hermes, FEEDS, stop, sample_every_s=10))
            # The latest prices are read first, then the stream opens.
            await until(lambda: fake.streams_opened == 1, what="the stream to open")
            # T0+3 falls in the same 10-second bucket as T0 for BTC: not kept; T0+12 is.
            fake.push({BTC_FEED: (Decimal(90_100), T0 + 3)})
            fake.push({BTC_FEED: (Decimal(90_200), T0 + 12), ETH_FEED: (Decimal(3_010), T0 + 12)})

            async def four_samples() -> bool:
                return await migrated_pool.fetchval("SELECT count(*) FROM market_prices") >= 4

            await until(four_samples, what="four stored samples")
            stop.set()
            fake.end_stream()
            assert await asyncio.wait_for(task, 30) == 4
    fill = TradeEvent(
        event_id="t:1", venue="avantis", source="test", trader="0xabc", pair_index=1,
        kind=EventKind.OPEN, trade_index=0, open_ts=T0 + 5, ts=T0 + 5, side=Side.LONG,
        collateral_usdc=100_000_000, leverage=Decimal(10), price=Decimal("90150.5"),
    )  # fmt: skip
    async with migrated_pool.acquire() as conn:
        await insert_events(conn, [fill])
        history = await price_history(conn, builtin_catalogue(), since=T0 - 1, until=T0 + 60)
    btc = history.filter(pair="BTC/USD")
    assert btc.select("ts", "price", "source").rows() == [
        (T0, 90_000.0, "pyth"),
        (T0 + 5, 90_150.5, "fill"),
        (T0 + 12, 90_200.0, "pyth"),
    ]
    assert history.filter(pair="ETH/USD")["price"].to_list() == [3_000.0, 3_010.0]
