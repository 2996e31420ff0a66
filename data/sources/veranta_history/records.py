"""Closed-trade records as the Veranta history API returns them, parsed exactly and checked.

Shape: `{"address", "count", "trades": [{time, gross, pairIndex, symbol, index, buy, leverage,
openPrice, tp, sl, collateral, positionSize, closePrice, usdcSent, openedAt, closingFee, funding}]}`.
`collateral` is the position's collateral before the close and `positionSize` the collateral
this close took out (smaller means a partial close). Numbers must be parsed as `Decimal`: as
floats the identity usdcSent = positionSize + gross - closingFee - funding drifts.

Every value is checked here, where it enters, against the range the protocol can produce, so
nothing downstream (the ledger, PostgreSQL's bigint and integer columns, the copy engine) meets a
value it cannot represent: a `RecordError` names the field and the value at fault.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from data.events import EventKind, Side, TradeEvent, position_key
from data.units import usdc_to_micro

VENUE = "avantis"
SOURCE = "history_api"

# Sane ranges. Avantis lists ~100 pairs, at most a few hundred times leverage, and no trade
# moves a billion USDC; anything outside is a corrupt record, not a trade to store.
MAX_PAIR_INDEX = 9_999
MAX_TRADE_INDEX = 99_999
MAX_LEVERAGE = Decimal(1000)
MAX_PRICE = Decimal(10**9)  # USD per unit
MAX_COLLATERAL = Decimal(10**9)  # USDC
MAX_PAYOUT = Decimal(10**12)  # USDC: gross PnL and usdcSent of a 1,000x trade of the largest collateral
MIN_TS = 1_577_836_800  # 2020-01-01: before Base and Avantis existed
MAX_TS = 4_102_444_800  # 2100-01-01
MAX_NUMBER_TEXT = 64  # characters of a number given as a string
MAX_SYMBOL = 32
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


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
        return position_key(self.trader, self.pair_index, self.trade_index, self.opened_at)

    @property
    def close_event_id(self) -> str:
        # The API gives closes no id; a position closes at most once per second per amount.
        return f"api:{self.position_key}:close:{self.closed_at}:{self.position_size}"

    @property
    def open_event_id(self) -> str:
        return f"api:{self.position_key}:open"


def trader_address(value: object) -> str:
    """A trader as stored everywhere: a 0x address of 40 hex digits, lower-case."""
    if not isinstance(value, str):
        raise RecordError(f"address is not a 0x address of 40 hex digits: {_shown(value)}")
    return _checked_address(value)


@lru_cache(maxsize=4096)
def _checked_address(value: str) -> str:
    if not _ADDRESS.fullmatch(value):
        raise RecordError(f"address is not a 0x address of 40 hex digits: {_shown(value)}")
    return value.lower()


def _shown(value: object) -> str:
    """A value as an error message quotes it: short, and never the repr of a nested structure
    (which could be huge or too deep to print)."""
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    text = str(value) if isinstance(value, (Decimal, int)) and not isinstance(value, bool) else repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def _number(rec: dict[str, Any], name: str, lo: Decimal | int, hi: Decimal | int) -> Decimal:
    """A finite number in [lo, hi], from a JSON number (Decimal or int) or a numeric string."""
    value = rec[name]
    kind = type(value)
    if kind is Decimal:
        d = value
    elif kind is int:
        d = Decimal(value)
    elif kind is str and len(value) <= MAX_NUMBER_TEXT:
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise RecordError(f"{name} is not a number: {_shown(value)}") from None
    else:
        raise RecordError(f"{name} is not a number: {_shown(value)}")
    if not d.is_finite():
        raise RecordError(f"{name} is not finite: {_shown(value)}")
    # Compared as Decimals first: 1e999999999 is refused here, never expanded into an integer.
    if not lo <= d <= hi:
        raise RecordError(f"{name} {_shown(value)} is outside [{lo}, {hi}]")
    return d


def _whole(rec: dict[str, Any], name: str, lo: int, hi: int) -> int:
    d = _number(rec, name, lo, hi)
    if d != d.to_integral_value():
        raise RecordError(f"{name} must be a whole number, not {_shown(rec[name])}")
    return int(d)


def _epoch(rec: dict[str, Any], name: str) -> int:
    try:
        return _whole(rec, name, MIN_TS, MAX_TS)
    except RecordError as exc:
        raise RecordError(f"{exc} (epoch seconds, 2020-01-01 .. 2100-01-01)") from None


def _iso_time(rec: dict[str, Any], name: str) -> int:
    value = rec[name]
    if not isinstance(value, str) or len(value) > 40:
        raise RecordError(f"{name} is not an ISO-8601 time: {_shown(value)}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"{name} is not an ISO-8601 time: {_shown(value)}") from None
    if moment.tzinfo is None:  # the API speaks UTC; never the machine's local time
        moment = moment.replace(tzinfo=UTC)
    if not MIN_TS <= moment.timestamp() < MAX_TS:
        raise RecordError(f"{name} {_shown(value)} is outside 2020-01-01 .. 2100-01-01")
    return int(moment.timestamp())


def _symbol(rec: dict[str, Any]) -> str:
    value = rec.get("symbol")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_SYMBOL or not value.isprintable():
        raise RecordError(
            f"symbol must be printable text of at most {MAX_SYMBOL} characters: {_shown(value)}"
        )
    return value


def _side(rec: dict[str, Any]) -> Side:
    value = rec["buy"]
    if value is True:
        return Side.LONG
    if value is False:
        return Side.SHORT
    raise RecordError(f"buy is not a boolean: {_shown(value)}")


def _optional_price(rec: dict[str, Any], name: str) -> Decimal:
    return _number(rec, name, 0, MAX_PRICE) if rec.get(name) is not None else Decimal(0)


def _missing(rec: dict[str, Any], names: tuple[str, ...]) -> None:
    missing = [k for k in names if rec.get(k) is None]
    if missing:
        raise RecordError(f"missing {', '.join(missing)}")


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


def parse_trade(trader: str, rec: Any) -> HistoryTrade:
    """One closed-trade record, checked field by field (the first fault found is raised)."""
    if not isinstance(rec, dict):
        raise RecordError(f"trade is not an object: {_shown(rec)}")
    _missing(rec, _REQUIRED)
    closed_at = _iso_time(rec, "time")
    opened_at = _epoch(rec, "openedAt")
    collateral = _number(rec, "collateral", 0, MAX_COLLATERAL)
    position_size = _number(rec, "positionSize", 0, MAX_COLLATERAL)
    trade = HistoryTrade(
        trader=trader_address(trader),
        closed_at=closed_at,
        pair_index=_whole(rec, "pairIndex", 0, MAX_PAIR_INDEX),
        symbol=_symbol(rec),
        trade_index=_whole(rec, "index", 0, MAX_TRADE_INDEX),
        side=_side(rec),
        leverage=_number(rec, "leverage", 0, MAX_LEVERAGE),
        open_price=_number(rec, "openPrice", 0, MAX_PRICE),
        close_price=_number(rec, "closePrice", 0, MAX_PRICE),
        collateral=collateral,
        position_size=position_size,
        gross=_number(rec, "gross", -MAX_PAYOUT, MAX_PAYOUT),
        usdc_sent=_number(rec, "usdcSent", 0, MAX_PAYOUT),
        opened_at=opened_at,
        closing_fee=_number(rec, "closingFee", 0, MAX_COLLATERAL),
        funding=_number(rec, "funding", -MAX_COLLATERAL, MAX_COLLATERAL),
        tp=_optional_price(rec, "tp"),
        sl=_optional_price(rec, "sl"),
    )
    if trade.leverage == 0 or trade.open_price == 0 or trade.close_price == 0:
        raise RecordError("leverage, openPrice and closePrice must be positive")
    if trade.position_size == 0 or trade.collateral < trade.position_size:
        raise RecordError(
            f"positionSize {trade.position_size} must be positive and at most the collateral {trade.collateral}"
        )
    if opened_at > closed_at:
        raise RecordError(f"openedAt {opened_at} is after the close ({rec['time']})")
    return trade


_OPEN_REQUIRED = ("pairIndex", "index", "buy", "leverage", "openPrice", "collateral", "openedAt")


def parse_open(trader: str, rec: Any) -> TradeEvent:
    """An open reported on its own (the order stream's fill of an open), with the id the history
    API's implied open of the same position gets, so both paths give one event."""
    if not isinstance(rec, dict):
        raise RecordError(f"open is not an object: {_shown(rec)}")
    _missing(rec, _OPEN_REQUIRED)
    side = _side(rec)
    leverage = _number(rec, "leverage", 0, MAX_LEVERAGE)
    price = _number(rec, "openPrice", 0, MAX_PRICE)
    collateral = _number(rec, "collateral", 0, MAX_COLLATERAL)
    if leverage == 0 or price == 0 or collateral == 0:
        raise RecordError("leverage, openPrice and collateral must be positive")
    trader = trader_address(trader)
    pair = _whole(rec, "pairIndex", 0, MAX_PAIR_INDEX)
    index = _whole(rec, "index", 0, MAX_TRADE_INDEX)
    opened_at = _epoch(rec, "openedAt")
    return TradeEvent(
        event_id=f"api:{position_key(trader, pair, index, opened_at)}:open",
        venue=VENUE,
        source=SOURCE,
        trader=trader,
        pair_index=pair,
        pair=_symbol(rec) or None,
        kind=EventKind.OPEN,
        trade_index=index,
        open_ts=opened_at,
        ts=opened_at,
        side=side,
        leverage=leverage,
        price=price,
        collateral_usdc=usdc_to_micro(collateral, exact=False),
        tp=_optional_price(rec, "tp"),
        sl=_optional_price(rec, "sl"),
    )


def read_document(path: Path) -> Any:
    """A JSON file with its numbers as exact Decimals; every way it can be unreadable is a
    `RecordError` that names the file (never a traceback)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RecordError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")  # a UTF-8 byte-order mark is allowed, nothing else
    except UnicodeDecodeError as exc:
        raise RecordError(
            f"{path}: not UTF-8 (byte {exc.start}: {data[exc.start : exc.start + 1]!r})"
        ) from None
    try:
        # Integers as Decimal too: a 5,000-digit integer is then a range error of its field.
        return json.loads(text, parse_float=Decimal, parse_int=Decimal)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise RecordError(f"{path}: JSON nested too deeply") from None
    except ValueError as exc:
        raise RecordError(f"{path}: not JSON: {exc}") from None


def load_file(path: Path) -> tuple[str, list[Any]]:
    """(trader address, raw trade records) from one history file."""
    doc = read_document(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("trades"), list):
        raise RecordError(f"{path}: expected an object with 'address' and a 'trades' list")
    try:
        return trader_address(doc.get("address")), doc["trades"]
    except RecordError as exc:
        raise RecordError(f"{path}: {exc}") from None


def close_kind(trade: HistoryTrade) -> EventKind:
    """Nothing paid out of a loss is a liquidation; less than the collateral closed, a partial."""
    if trade.usdc_sent == 0 and trade.gross < 0:
        return EventKind.LIQUIDATION
    return EventKind.PARTIAL_CLOSE if trade.position_size < trade.collateral else EventKind.CLOSE


def to_events(trade: HistoryTrade, open_collateral: Decimal | None = None) -> tuple[TradeEvent, TradeEvent]:
    """The open this close implies and the close itself, as canonical events.

    `open_collateral` is the collateral the position opened with (the largest `collateral` among
    its closes); the history API does not report the opening fee, so it is 0 here.
    """
    kind = close_kind(trade)
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
        gross_pnl_usdc=usdc_to_micro(trade.gross, exact=False),
        tp=trade.tp,
        sl=trade.sl,
        **common,
    )
    return opened, closed
