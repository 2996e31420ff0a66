"""The order-stream source against a local Pusher server and a local history API: fills become
events, a dropped connection is resumed and what it missed is filled from history, exactly once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

from veranta_sdk import AsyncVeranta

from data.events import TradeEvent
from data.sources.veranta_history.ingest import events_for
from data.sources.veranta_history.records import parse_trade
from data.sources.veranta_orders.stream import OrderStreamSource, history_gap_fill
from tests.conftest import shared_data_or_skip
from tests.fakes.pusher import pusher_server
from tests.fakes.veranta_history import history_server

KEY = "app-key-123"


async def until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_fills_survive_a_dropped_connection_without_loss_or_duplicates(tmp_path: Path) -> None:
    source_file = sorted(shared_data_or_skip("avantis", "trades").glob("*.json"))[0]
    doc = json.loads(source_file.read_text())
    trader = doc["address"].lower()
    trades = sorted(doc["trades"], key=lambda t: t["time"])[:30]
    closed_so_far = {"address": doc["address"], "count": 0, "trades": []}
    history_file = tmp_path / "history.json"

    def close(trade: dict) -> None:  # the history API learns of the close at once
        closed_so_far["trades"].insert(0, trade)
        closed_so_far["count"] += 1
        history_file.write_text(json.dumps(closed_so_far))

    history_file.write_text(json.dumps(closed_so_far))
    emitted: list[TradeEvent] = []

    async def emit(events: list[TradeEvent]) -> None:
        emitted.extend(events)

    async with pusher_server(KEY) as (ws_url, pusher), history_server([history_file]) as (api_url, _):
        async with AsyncVeranta(history_api_url=api_url) as client:
            source = OrderStreamSource(
                ws_url, KEY, doc["address"], emit, gap_fill=history_gap_fill(client.info, limit=7)
            )
            stop = asyncio.Event()
            task = asyncio.create_task(source.run(stop))
            channel = f"events-{doc['address']}"
            await until(lambda: source.subscriptions == 1)

            async def fill(trade: dict) -> int:
                close(trade)
                return await pusher.publish(channel, "OrderFilled", {**trade, "isOpen": False})

            opening = {
                k: trades[0][k] for k in ("pairIndex", "index", "buy", "leverage", "openPrice", "openedAt")
            }
            assert (
                await pusher.publish(
                    channel, "OrderFilled", {**opening, "collateral": trades[0]["collateral"], "isOpen": True}
                )
                == 1
            )
            for trade in trades[:10]:
                assert await fill(trade) == 1
            assert await pusher.publish(channel, "OrderFilled", {"isOpen": False, "pairIndex": 1}) == 1
            await until(lambda: len({e.event_id for e in emitted if e.is_close}) == 10)

            await pusher.drop_all()
            for trade in trades[10:20]:  # published into the void: Pusher keeps nothing
                assert await fill(trade) == 0
            await until(lambda: source.subscriptions == 2, 5)
            for trade in trades[20:]:
                assert await fill(trade) == 1
            await until(lambda: len({e.event_id for e in emitted if e.is_close}) == 30)
            stop.set()
            await asyncio.wait_for(task, 5)

    exact = sorted(
        json.loads(source_file.read_text(), parse_float=Decimal)["trades"], key=lambda t: t["time"]
    )[:30]
    expected = {e.event_id for e in events_for([parse_trade(trader, t) for t in exact])}
    ids = [e.event_id for e in emitted]
    assert set(ids) == expected
    assert not [i for i, n in Counter(ids).items() if n > 1], "an event was emitted twice"
    assert all(e.source == "order_stream" for e in emitted)
    assert len(source.rejected) == 1 and "missing" in source.rejected[0]["reason"]
    assert pusher.pongs >= 2 and pusher.connections == 2


async def test_a_wrong_app_key_is_reported_and_retried_not_fatal() -> None:
    async with pusher_server(KEY) as (ws_url, pusher):

        async def emit(events: list[TradeEvent]) -> None:
            raise AssertionError("nothing should arrive")

        source = OrderStreamSource(ws_url, "wrong-key", "0xabc", emit)
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(stop))
        await asyncio.sleep(1.0)
        assert not task.done() and source.subscriptions == 0 and pusher.connections == 0
        stop.set()
        await asyncio.wait_for(task, 5)
