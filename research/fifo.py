"""FIFO lot matching for venues that net one position per (trader, pair) from plain fills.

Quantities are integers of 1e-8 and prices integers of 1e-10, so a lot split is an exact
product and cash is conserved to the last unit: PnL is carried in units of 1e-18 USD and turned
into `Decimal` only for output. A fill larger than the open position closes it and opens the
rest on the other side (a flip); a fill's fee is charged once, however many lots it touches.
"""

from __future__ import annotations

import csv
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import IO

import polars as pl

QTY_DECIMALS = 8
PRICE_DECIMALS = 10
CASH_DECIMALS = QTY_DECIMALS + PRICE_DECIMALS
FEE_DECIMALS = 10  # fees are quoted cash; 1e-10 USD resolves any venue's fee


class FillError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Fill:
    trader: str
    pair: str
    ts: int  # epoch seconds
    qty: int  # signed: + buy, - sell, in 1e-8
    price: int  # 1e-10
    fee: int  # 1e-10 USD


@dataclass(slots=True)
class Book:
    """Open lots of one (trader, pair): all on one side, oldest first."""

    lots: deque[list[int]] = field(default_factory=deque)  # [signed qty, price]
    realized: int = 0  # 1e-18 USD, before fees
    fees: int = 0
    closed_qty: int = 0

    @property
    def open_qty(self) -> int:
        return sum(lot[0] for lot in self.lots)


class FifoLedger:
    def __init__(self) -> None:
        self.books: dict[tuple[str, str], Book] = {}

    def apply(self, fill: Fill) -> None:
        self.apply_arrays([fill.trader], [fill.pair], [fill.qty], [fill.price], [fill.fee])

    def apply_arrays(
        self, traders: list[str], pairs: list[str], qtys: list[int], prices: list[int], fees: list[int]
    ) -> None:
        """Apply fills given as columns, in order. The hot loop: written flat, without helper calls."""
        books = self.books
        get = books.get
        for key, qty, price, fee in zip(zip(traders, pairs, strict=True), qtys, prices, fees, strict=True):
            book = get(key)
            if book is None:
                book = books[key] = Book()
            book.fees += fee
            lots = book.lots
            if not lots or (lots[0][0] > 0) == (qty > 0):
                lots.append([qty, price])
                continue
            realized = closed = 0
            while qty and lots and (lots[0][0] > 0) != (qty > 0):
                lot = lots[0]
                lot_qty = lot[0]
                if lot_qty > 0:  # a long lot closed by a sell earns sell - buy
                    take = lot_qty if lot_qty < -qty else -qty
                    realized += take * (price - lot[1])
                    if take == lot_qty:
                        lots.popleft()
                    else:
                        lot[0] = lot_qty - take
                    qty += take
                else:  # a short lot closed by a buy earns sell - buy too
                    take = -lot_qty if -lot_qty < qty else qty
                    realized += take * (lot[1] - price)
                    if take == -lot_qty:
                        lots.popleft()
                    else:
                        lot[0] = lot_qty + take
                    qty -= take
                closed += take
            book.realized += realized
            book.closed_qty += closed
            if qty:  # what is left opens (or, after a flip, reverses) the position
                lots.append([qty, price])

    @classmethod
    def from_frame(cls, fills: pl.DataFrame) -> FifoLedger:
        """Bulk path: columns trader, pair, qty, price, fee (int64, scaled as above), in time order.

        Runs the compiled matcher when the integers fit 64 bits, the Python loop otherwise; the
        books come out the same either way.
        """
        import numpy as np

        from research import fifo_kernel as k

        qty = fills["qty"].to_numpy()
        price = fills["price"].to_numpy()
        fee = fills["fee"].to_numpy()
        ledger = cls()
        if not k.fits_int64(qty, price, fee):
            ledger.apply_arrays(
                fills["trader"].to_list(), fills["pair"].to_list(), qty.tolist(), price.tolist(), fee.tolist()
            )
            return ledger
        keys = fills.select(
            t=pl.col("trader").cast(pl.Categorical).to_physical().cast(pl.Int64),
            p=pl.col("pair").cast(pl.Categorical).to_physical().cast(pl.Int64),
        )
        combined = keys["t"].to_numpy() * (int(keys["p"].max() or 0) + 1) + keys["p"].to_numpy()
        uniq, book = np.unique(combined, return_inverse=True)
        order = np.argsort(book, kind="stable")
        r_hi, r_lo, f_hi, f_lo, closed, head, tail, lot_q, lot_p = k.match_sorted(
            book[order], qty[order], price[order], fee[order], len(uniq)
        )
        first = np.zeros(len(uniq), dtype=np.int64)
        first[book[order[::-1]]] = order[::-1]  # the first fill of each book names it
        traders, pairs = fills["trader"], fills["pair"]
        for b in range(len(uniq)):
            row = int(first[b])
            ledger.books[(traders[row], pairs[row])] = Book(
                lots=deque(
                    [int(q), int(p)]
                    for q, p in zip(lot_q[head[b] : tail[b]], lot_p[head[b] : tail[b]], strict=True)
                ),
                realized=k.to_int128(r_hi[b], r_lo[b]),
                fees=(int(f_hi[b]) << 32) + int(f_lo[b]),
                closed_qty=int(closed[b]),
            )
        return ledger

    def rows(self) -> list[dict[str, object]]:
        out = []
        for (trader, pair), book in sorted(self.books.items()):
            open_qty = book.open_qty
            cost = sum(abs(q) * p for q, p in book.lots)
            avg = (Decimal(cost) / Decimal(abs(open_qty))).scaleb(-PRICE_DECIMALS) if open_qty else None
            out.append(
                {
                    "trader": trader,
                    "pair": pair,
                    "realized_pnl": _dec(book.realized, CASH_DECIMALS),
                    "fees_paid": _dec(book.fees, FEE_DECIMALS),
                    "closed_qty": _dec(book.closed_qty, QTY_DECIMALS),
                    "open_qty": _dec(open_qty, QTY_DECIMALS),
                    "open_avg_price": ""
                    if avg is None
                    else _fmt(avg.quantize(Decimal(1).scaleb(-PRICE_DECIMALS))),
                }
            )
        return out


def _dec(units: int, decimals: int) -> str:
    return _fmt(Decimal(units).scaleb(-decimals))


def _fmt(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


MAX_TS = 4_102_444_800  # 2100-01-01: a ts past it is a typo (or 1e999999999), not a fill
MAX_FIELD = 256  # characters in any field: a trader or pair name longer than this is garbage
MAX_AMOUNT = Decimal(10**15)  # qty, price or fee in their units: beyond it nothing is a real fill


def _scaled(text: str, decimals: int, name: str) -> int:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise FillError(f"{name} is not a number: {_quoted(text)}") from None
    if not value.is_finite():
        raise FillError(f"{name} is not finite: {_quoted(text)}")
    if not -MAX_AMOUNT < value < MAX_AMOUNT:  # compared, not abs()ed or scaled: 1e999999999 overflows those
        raise FillError(f"{name} {_quoted(text)} is too large (at most 1e15)")
    scaled = value.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise FillError(f"{name} {text.strip()} has more than {decimals} decimals")
    return int(scaled)


def _quoted(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _parse_ts(text: str) -> int:
    """Epoch seconds (a fraction is dropped) or ISO-8601, naive times meaning UTC; 1970..2100."""
    text = text.strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = None
    if value is not None:
        if not value.is_finite() or not 0 <= value < MAX_TS:
            raise FillError(f"ts {_quoted(text)} is not epoch seconds between 1970 and 2100")
        return int(value)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FillError(f"ts is neither epoch seconds nor ISO-8601: {_quoted(text)}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not 0 <= moment.timestamp() < MAX_TS:
        raise FillError(f"ts {_quoted(text)} is not between 1970 and 2100")
    return int(moment.timestamp())


FILL_COLUMNS = ("trader", "pair", "ts", "side", "qty", "price", "fee")


def parse_fill(row: dict[str, str]) -> Fill:
    """One CSV row, checked; the reference for what the columnar reader accepts."""
    for name in FILL_COLUMNS:
        if len(row.get(name) or "") > MAX_FIELD:
            raise FillError(f"{name} is longer than {MAX_FIELD} characters")
    missing = [c for c in FILL_COLUMNS if not (row.get(c) or "").strip()]
    if missing:
        raise FillError(f"missing {', '.join(missing)}")
    for name in ("trader", "pair"):
        if not row[name].strip().isprintable():
            raise FillError(f"{name} contains control characters: {_quoted(row[name])}")
    side = row["side"].strip().lower()
    if side not in ("buy", "sell"):
        raise FillError(f"side must be buy or sell, not {_quoted(row['side'])}")
    qty = _scaled(row["qty"], QTY_DECIMALS, "qty")
    price = _scaled(row["price"], PRICE_DECIMALS, "price")
    fee = _scaled(row["fee"], FEE_DECIMALS, "fee")
    if qty <= 0:
        raise FillError("qty must be positive")
    if price <= 0:
        raise FillError("price must be positive")
    if fee < 0:
        raise FillError("fee must not be negative")
    return Fill(
        row["trader"].strip(),
        row["pair"].strip(),
        _parse_ts(row["ts"]),
        qty if side == "buy" else -qty,
        price,
        fee,
    )


def read_fills(stream: IO[str]) -> tuple[list[Fill], list[tuple[int, str]]]:
    """Parse a fills CSV row by row. Returns the good fills (in time order) and (line number,
    reason) per bad row. The columnar reader (`fifo_csv`) uses it for files with quoted fields,
    whose records may span lines."""
    csv.field_size_limit(2**31 - 1)  # a huge field is the row's error, not the reader's
    reader = csv.DictReader(stream)
    if reader.fieldnames is None or not set(FILL_COLUMNS) <= {f.strip() for f in reader.fieldnames}:
        raise FillError(f"header must contain {','.join(FILL_COLUMNS)}")
    fills, errors = [], []
    for row in reader:
        line = reader.line_num
        try:
            fills.append(parse_fill({k.strip(): v for k, v in row.items() if k is not None}))
        except FillError as exc:
            errors.append((line, str(exc)))
    # Stable sort: fills with the same timestamp keep file order.
    fills.sort(key=lambda f: f.ts)
    return fills, errors
