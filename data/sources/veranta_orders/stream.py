"""A leader's fills as they happen: Veranta's order stream over the Pusher websocket protocol.

Protocol 7, public channel `events-{trader}`, as veranta-sdk's `streams.orders` speaks it, but
with a configurable host (the SDK hard-codes Pusher's cloud) and without swallowing errors:
`pusher:connection_established` → `pusher:subscribe` → `pusher_internal:subscription_succeeded`,
pings answered with pongs, `pusher:error` logged with its code.

Pusher keeps no history: what is published while the socket is down is gone from the stream. So
after every (re)subscription the source asks `gap_fill` (the history API) for what it missed and
emits only events it has not emitted before; events carry the history API's ids, so a fill seen
on both paths is one event. Opens that are still open when the gap is filled cannot come from the
closed-trade history; they arrive through the chain indexer.

`OrderFilled` payload read here (fields as in the history API's trade records, plus `isOpen`):
`pairIndex, index, buy, leverage, openPrice, collateral, openedAt, isOpen` and, for a close,
`time, closePrice, positionSize, gross, usdcSent, closingFee, funding`. A payload without them is
rejected with its reason and counted, never guessed at.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import websockets

from data.events import TradeEvent
from data.sources.veranta_history.records import RecordError, parse_open, parse_trade, to_events
from infra.logs import log_fields
from infra.metrics import counter

log = logging.getLogger("vanta.order_stream")

FILLS = counter("vanta_order_stream_fills_total", "OrderFilled messages turned into events")
REJECTED = counter("vanta_order_stream_rejected_total", "OrderFilled messages that could not be read")
RECONNECTS = counter("vanta_order_stream_reconnects_total", "Order stream reconnections")

SOURCE = "order_stream"
Emit = Callable[[list[TradeEvent]], Awaitable[None]]
GapFill = Callable[[str], Awaitable[list[TradeEvent]]]


def fill_to_events(trader: str, data: dict[str, Any]) -> list[TradeEvent]:
    """An `OrderFilled` payload as canonical events (a close also implies its open)."""
    if not isinstance(data, dict):
        raise RecordError("OrderFilled data is not an object")
    if data.get("isOpen") is True:
        return [_tag(parse_open(trader, data))]
    if data.get("isOpen") is not False:
        raise RecordError("isOpen missing or not a boolean")
    opened, closed = to_events(parse_trade(trader, data))
    return [_tag(opened), _tag(closed)]


def _tag(ev: TradeEvent) -> TradeEvent:
    return replace(ev, source=SOURCE)


class OrderStreamSource:
    def __init__(
        self,
        ws_base: str,
        app_key: str,
        trader: str,
        emit: Emit,
        *,
        gap_fill: GapFill | None = None,
        remember: int = 100_000,
    ):
        self.url = f"{ws_base.rstrip('/')}/app/{app_key}?protocol=7&client=vanta&version=1.0"
        self.trader = trader.lower()
        self.channel = f"events-{trader}"
        self.emit = emit
        self.gap_fill = gap_fill
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self.subscriptions = 0
        self.rejected: list[dict[str, Any]] = []

    async def _emit_new(self, events: list[TradeEvent]) -> None:
        fresh = [ev for ev in events if ev.event_id not in self._seen]
        if not fresh:
            return
        await self.emit(fresh)
        for ev in fresh:
            self._seen[ev.event_id] = None
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                await self._session(stop)
                delay = 0.5
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                RECONNECTS.inc()
                log.warning(
                    "order stream dropped; reconnecting",
                    extra=log_fields(
                        trader=self.trader, error=f"{type(exc).__name__}: {exc}", retry_in_s=delay
                    ),
                )
            if stop.is_set():
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _session(self, stop: asyncio.Event) -> None:
        async with websockets.connect(self.url, ping_interval=30, open_timeout=10) as ws:
            stopper = asyncio.create_task(stop.wait())
            try:
                while True:
                    receiver = asyncio.create_task(ws.recv())
                    done, _ = await asyncio.wait({receiver, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    if stopper in done:
                        receiver.cancel()
                        return
                    await self._handle(ws, json.loads(receiver.result()))
            finally:
                stopper.cancel()

    async def _handle(self, ws: Any, msg: dict[str, Any]) -> None:
        event = msg.get("event", "")
        if event == "pusher:connection_established":
            await ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": self.channel}}))
        elif event == "pusher_internal:subscription_succeeded":
            self.subscriptions += 1
            log.info("order stream subscribed", extra=log_fields(channel=self.channel))
            if self.gap_fill is not None:
                await self._emit_new(await self.gap_fill(self.trader))
        elif event == "pusher:ping":
            await ws.send(json.dumps({"event": "pusher:pong", "data": {}}))
        elif event == "pusher:error":
            log.warning("pusher error", extra=log_fields(data=msg.get("data")))
        elif event == "OrderFilled" and msg.get("channel") == self.channel:
            data = msg.get("data")
            try:
                payload = json.loads(data, parse_float=Decimal) if isinstance(data, str) else data
                events = fill_to_events(self.trader, payload)
            except (RecordError, ValueError) as exc:
                REJECTED.inc()
                self.rejected.append({"reason": str(exc), "data": data})
                log.warning("OrderFilled not read", extra=log_fields(reason=str(exc)))
                return
            FILLS.inc()
            await self._emit_new(events)


def history_gap_fill(info: Any, *, limit: int = 100) -> GapFill:
    """Gap filler over veranta-sdk's history API: the trader's closed trades as events."""
    from data.sources.veranta_history.api import fetch_trade_history
    from data.sources.veranta_history.ingest import events_for

    async def fill(trader: str) -> list[TradeEvent]:
        records = await fetch_trade_history(info, trader, limit=limit)
        trades = []
        for rec in records:
            try:
                trades.append(parse_trade(trader, rec))
            except RecordError as exc:
                log.warning("history record not read", extra=log_fields(trader=trader, reason=str(exc)))
        return [_tag(ev) for ev in events_for(trades)]

    return fill
