"""Closed-trade records as the Veranta history API returns them, parsed exactly.

Shape: `{"address", "count", "trades": [{time, gross, pairIndex, symbol, index, buy, leverage,
openPrice, tp, sl, collateral, positionSize, closePrice, usdcSent, openedAt, closingFee, funding}]}`.
`collateral` is the position's collateral before the close and `positionSize` the collateral
this close took out (smaller means a partial close). Numbers must be parsed as `Decimal`: as
floats the identity usdcSent = positionSize + gross - closingFee - funding drifts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from data.events import EventKind, Side, TradeEvent
from data.units import usdc_to_micro

VENUE = "avantis"
SOURCE = "history_api"


class RecordError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class HistoryTrade:
    trader: str
    closed_at: int  # epoch seconds
    pair_index: int
    symbol: str
    trade_index: int
    side: Side
    leverage: Decimal
    open_price: Decimal
    close_price: Decimal
    collateral: Decimal  # before this close
    position_size: Decimal  # collateral closed
    gross: Decimal
    usdc_sent: Decimal
    opened_at: int
    closing_fee: Decimal
    funding: Decimal
    tp: Decimal
    sl: Decimal

    @property
    def position_key(self) -> str:
        from data.events import position_key

        return position_key(self.trader, self.pair_index, self.trade_index, self.opened_at)

    @property
    def close_event_id(self) -> str:
        # The API gives closes no id; a position closes at most once per second per amount.
        return f"api:{self.position_key}:close:{self.closed_at}:{self.position_size}"

    @property
    def open_event_id(self) -> str:
        return f"api:{self.position_key}:open"


_REQUIRED = (
    "time",
    "gross",
    "pairIndex",
    "index",
    "buy",
    "leverage",
    "openPrice",
    "collateral",
    "positionSize",
    "closePrice",
    "usdcSent",
    "openedAt",
    "closingFee",
    "funding",
)


def _dec(rec: dict[str, Any], name: str) -> Decimal:
    value = rec[name]
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        raise RecordError(f"{name} is not a number: {value!r}")
    try:
        d = Decimal(value)
    except ArithmeticError:
        raise RecordError(f"{name} is not a number: {value!r}") from None
    if not d.is_finite():
        raise RecordError(f"{name} is not finite")
    return d


def parse_trade(trader: str, rec: Any) -> HistoryTrade:
    if not isinstance(rec, dict):
        raise RecordError("trade is not an object")
    missing = [k for k in _REQUIRED if k not in rec or rec[k] is None]
    if missing:
        raise RecordError(f"missing {', '.join(missing)}")
    if not isinstance(rec["buy"], bool):
        raise RecordError("buy is not a boolean")
    try:
        closed_at = int(datetime.fromisoformat(str(rec["time"]).replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise RecordError(f"time is not ISO-8601: {rec['time']!r}") from None
    trade = HistoryTrade(
        trader=trader.lower(),
        closed_at=closed_at,
        pair_index=int(_dec(rec, "pairIndex")),
        symbol=str(rec.get("symbol") or ""),
        trade_index=int(_dec(rec, "index")),
        side=Side.LONG if rec["buy"] else Side.SHORT,
        leverage=_dec(rec, "leverage"),
        open_price=_dec(rec, "openPrice"),
        close_price=_dec(rec, "closePrice"),
        collateral=_dec(rec, "collateral"),
        position_size=_dec(rec, "positionSize"),
        gross=_dec(rec, "gross"),
        usdc_sent=_dec(rec, "usdcSent"),
        opened_at=int(_dec(rec, "openedAt")),
        closing_fee=_dec(rec, "closingFee"),
        funding=_dec(rec, "funding"),
        tp=_dec(rec, "tp") if rec.get("tp") is not None else Decimal(0),
        sl=_dec(rec, "sl") if rec.get("sl") is not None else Decimal(0),
    )
    if trade.leverage <= 0 or trade.open_price <= 0 or trade.close_price <= 0:
        raise RecordError("leverage and prices must be positive")
    if trade.position_size <= 0 or trade.collateral < trade.position_size:
        raise RecordError("positionSize must be positive and at most the collateral")
    if trade.usdc_sent < 0 or trade.closing_fee < 0:
        raise RecordError("usdcSent and closingFee must not be negative")
    if trade.opened_at > trade.closed_at:
        raise RecordError("openedAt is after the close")
    return trade


_OPEN_REQUIRED = ("pairIndex", "index", "buy", "leverage", "openPrice", "collateral", "openedAt")


def parse_open(trader: str, rec: Any) -> TradeEvent:
    """An open reported on its own (the order stream's fill of an open), with the id the history
    API's implied open of the same position gets, so both paths give one event."""
    if not isinstance(rec, dict):
        raise RecordError("open is not an object")
    missing = [k for k in _OPEN_REQUIRED if rec.get(k) is None]
    if missing:
        raise RecordError(f"missing {', '.join(missing)}")
    if not isinstance(rec["buy"], bool):
        raise RecordError("buy is not a boolean")
    leverage, price, collateral = _dec(rec, "leverage"), _dec(rec, "openPrice"), _dec(rec, "collateral")
    if leverage <= 0 or price <= 0 or collateral <= 0:
        raise RecordError("leverage, openPrice and collateral must be positive")
    trader = trader.lower()
    pair, index, opened_at = int(_dec(rec, "pairIndex")), int(_dec(rec, "index")), int(_dec(rec, "openedAt"))
    from data.events import position_key

    return TradeEvent(
        event_id=f"api:{position_key(trader, pair, index, opened_at)}:open",
        venue=VENUE,
        source=SOURCE,
        trader=trader,
        pair_index=pair,
        pair=str(rec.get("symbol") or "") or None,
        kind=EventKind.OPEN,
        trade_index=index,
        open_ts=opened_at,
        ts=opened_at,
        side=Side.LONG if rec["buy"] else Side.SHORT,
        leverage=leverage,
        price=price,
        collateral_usdc=usdc_to_micro(collateral, exact=False),
        tp=_dec(rec, "tp") if rec.get("tp") is not None else Decimal(0),
        sl=_dec(rec, "sl") if rec.get("sl") is not None else Decimal(0),
    )


def load_file(path: Path) -> tuple[str, list[Any]]:
    """(trader address, raw trade records) from one history file."""
    doc = json.loads(path.read_text(), parse_float=Decimal)
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("trades"), list)
        or not isinstance(doc.get("address"), str)
    ):
        raise RecordError(f"{path}: expected an object with 'address' and a 'trades' list")
    return doc["address"], doc["trades"]


def to_events(trade: HistoryTrade, open_collateral: Decimal | None = None) -> tuple[TradeEvent, TradeEvent]:
    """The open this close implies and the close itself, as canonical events.

    `open_collateral` is the collateral the position opened with (the largest `collateral` among
    its closes); the history API does not report the opening fee, so it is 0 here.
    """
    partial = trade.position_size < trade.collateral
    if trade.usdc_sent == 0 and trade.gross < 0:
        kind = EventKind.LIQUIDATION
    else:
        kind = EventKind.PARTIAL_CLOSE if partial else EventKind.CLOSE
    common = dict(
        venue=VENUE,
        source=SOURCE,
        trader=trade.trader,
        pair_index=trade.pair_index,
        pair=trade.symbol or None,
        trade_index=trade.trade_index,
        open_ts=trade.opened_at,
        side=trade.side,
        leverage=trade.leverage,
    )
    opened = TradeEvent(
        event_id=trade.open_event_id,
        kind=EventKind.OPEN,
        ts=trade.opened_at,
        price=trade.open_price,
        collateral_usdc=usdc_to_micro(open_collateral or trade.collateral, exact=False),
        **common,
    )
    gross_micro = usdc_to_micro(trade.gross, exact=False)
    closed = TradeEvent(
        event_id=trade.close_event_id,
        kind=kind,
        ts=trade.closed_at,
        price=trade.close_price,
        collateral_usdc=usdc_to_micro(trade.collateral, exact=False),
        size_closed_usdc=usdc_to_micro(trade.position_size, exact=False),
        close_fee_usdc=usdc_to_micro(trade.closing_fee, exact=False),
        rollover_fee_usdc=usdc_to_micro(trade.funding, exact=False),
        usdc_sent=usdc_to_micro(trade.usdc_sent, exact=False),
        gross_pnl_usdc=gross_micro,
        tp=trade.tp,
        sl=trade.sl,
        **common,
    )
    return opened, closed
