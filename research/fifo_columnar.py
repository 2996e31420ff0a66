"""`vanta pnl fifo` as columns: a fills CSV read and matched FIFO without a Python loop per fill.

Reading. polars reads every field as text; well-formed rows are checked and scaled to integers
with vectorized expressions; every other row goes through `parse_fill`, the row parser that
defines what a fill is, which either accepts it or names its fault. So the two paths cannot
disagree on a row's fate, and a bad row costs a few microseconds, not a traceback. Row numbers
map to line numbers because the fast path only reads files without quotes (a quoted field may
span lines; such files go through the row reader, which counts lines itself).

Matching. FIFO needs no loop: between two moments when a book is flat its position has one
sign, so units close in the order they opened and every closed episode realizes
sign × (value of its closing fills − value of its opening fills). A fill that crosses zero is
split into the part that closes and the part that opens. Only the last episode of a book is
still open: its unclosed units are the newest opened ones, found with a reverse running sum.
Products of quantity and price need up to 124 bits, so they are summed as Int128: exact, the
same integers `FifoLedger` computes (a property test holds them equal).
"""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import polars as pl

from research.fifo import (
    FEE_DECIMALS,
    FILL_COLUMNS,
    MAX_FIELD,
    MAX_TS,
    PRICE_DECIMALS,
    QTY_DECIMALS,
    FifoLedger,
    FillError,
    _dec,
    _fmt,
    parse_fill,
    read_fills,
)

OUTPUT_COLUMNS = ["trader", "pair", "realized_pnl", "fees_paid", "closed_qty", "open_qty", "open_avg_price"]
_BOM = b"\xef\xbb\xbf"
_INT64_SAFE = 2**62


def _decode_lines(data: bytes, errors: list[tuple[int, str]]) -> bytes:
    """Blank out each line that is not UTF-8 (reported by number), keeping the line count."""
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        pass
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            if i == 0:
                raise FillError("the header line is not UTF-8") from None
            errors.append((i + 1, f"not UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})"))
            lines[i] = b""
    return b"\n".join(lines)


def _amount(col: str, decimals: int) -> tuple[pl.Expr, pl.Expr]:
    """(well-formed, scaled integer) for a plain decimal `123.456` that fits 64 bits once
    scaled: native integer casts of the two parts, no regular expression per row."""
    parts = pl.col(col).str.split_exact(".", 1)
    whole = parts.struct.field("field_0").cast(pl.Int64, strict=False)
    frac = parts.struct.field("field_1")
    frac_ok = frac.is_null() | (
        (frac.str.len_bytes() <= decimals) & (frac.str.strip_chars("0123456789").str.len_bytes() == 0)
    )
    well_formed = whole.is_between(0, 10 ** (18 - decimals) - 1) & frac_ok
    digits = frac.fill_null("").str.pad_end(decimals, "0").cast(pl.Int64, strict=False)
    return well_formed, whole * 10**decimals + digits


def _frame_of(fills: list, lines: list[int]) -> pl.DataFrame:
    """Row-parsed fills as columns; amounts past 64 bits (up to 1e15 units) as Int128."""
    wide = any(abs(f.qty) >= _INT64_SAFE or f.price >= _INT64_SAFE or f.fee >= _INT64_SAFE for f in fills)
    amount = pl.Int128 if wide else pl.Int64
    return pl.DataFrame(
        {
            "line": lines,
            "trader": [f.trader for f in fills],
            "pair": [f.pair for f in fills],
            "ts": [f.ts for f in fills],
            "qty": [f.qty for f in fills],
            "price": [f.price for f in fills],
            "fee": [f.fee for f in fills],
        },
        schema={
            "line": pl.Int64,
            "trader": pl.Utf8,
            "pair": pl.Utf8,
            "ts": pl.Int64,
            "qty": amount,
            "price": amount,
            "fee": amount,
        },
    )


def read_fills_csv(path: Path) -> tuple[pl.DataFrame, list[tuple[int, str]]]:
    """(good fills in time order: line, trader, pair, ts, qty ±, price, fee as scaled integers;
    (line, reason) per bad row). A file that cannot be fills at all raises `FillError`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FillError(f"cannot be read: {exc.strerror or exc}") from None
    data = data.removeprefix(_BOM)
    errors: list[tuple[int, str]] = []
    data = _decode_lines(data, errors)
    if b'"' in data:
        fills, row_errors = read_fills(io.StringIO(data.decode("utf-8")))
        return _frame_of(fills, list(range(len(fills)))), sorted(errors + row_errors)
    try:
        raw = pl.read_csv(
            data,
            infer_schema=False,
            quote_char=None,
            truncate_ragged_lines=True,
            raise_if_empty=False,
            row_index_name="__row",
        )
    except pl.exceptions.PolarsError as exc:
        raise FillError(f"not a CSV file: {str(exc).splitlines()[0]}") from None
    names = {c.strip(): c for c in raw.columns if c != "__row"}
    if not set(FILL_COLUMNS) <= set(names):
        raise FillError(f"header must contain {','.join(FILL_COLUMNS)}")
    raw = raw.select(pl.col("__row"), *(pl.col(names[c]).alias(c) for c in FILL_COLUMNS))
    raw = raw.filter(~pl.all_horizontal(pl.col(c).is_null() for c in FILL_COLUMNS))  # blank lines
    qty_ok, qty = _amount("qty", QTY_DECIMALS)
    price_ok, price = _amount("price", PRICE_DECIMALS)
    fee_ok, fee = _amount("fee", FEE_DECIMALS)
    ts = pl.col("ts").cast(pl.Int64, strict=False)  # whole epoch seconds; the rest, row by row
    # The fast path takes only what needs no cleaning: printable ASCII names without outer
    # spaces, lower-case sides, plain numbers. Anything else (spaces, ISO times, exponents,
    # upper case, non-ASCII) is for the row parser to accept or name.
    name_ok = [
        pl.col(c).str.len_bytes().is_between(1, MAX_FIELD)
        & pl.col(c).str.contains(r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$")
        for c in ("trader", "pair")
    ]
    checked = raw.with_columns(
        _qty=qty,
        _price=price,
        _fee=fee,
        _ts=ts,
        _ok=(
            qty_ok
            & price_ok
            & fee_ok
            & ts.is_between(0, MAX_TS - 1)
            & pl.col("side").is_in(["buy", "sell"])
            & pl.all_horizontal(name_ok)
        ).fill_null(False),
    ).with_columns(_ok=pl.col("_ok") & (pl.col("_qty") > 0) & (pl.col("_price") > 0))
    fast = (
        checked.lazy()
        .filter("_ok")
        .select(
            line=pl.col("__row").cast(pl.Int64) + 2,
            trader="trader",
            pair="pair",
            ts="_ts",
            qty=pl.when(pl.col("side") == "buy").then(pl.col("_qty")).otherwise(-pl.col("_qty")),
            price="_price",
            fee="_fee",
        )
        .collect()
    )
    # Everything else, row by row through the reference parser: accepted, or named.
    slow_rows = raw.filter(~checked["_ok"])
    slow, slow_lines = [], []
    for row in slow_rows.iter_rows(named=True):
        line = row.pop("__row") + 2
        try:
            slow.append(parse_fill({k: v or "" for k, v in row.items()}))
            slow_lines.append(line)
        except FillError as exc:
            errors.append((line, str(exc)))
    fills = pl.concat([fast, _frame_of(slow, slow_lines)], how="vertical_relaxed") if slow else fast
    # Time order; fills in the same second keep their order in the file.
    return fills.sort("ts", "line"), sorted(errors)


def fifo_books(fills: pl.DataFrame) -> pl.DataFrame:
    """Per (trader, pair): realized (before fees), fees, closed and open quantity, and the cost
    of the open lots; all exact integers in the units of `research.fifo`. `fills` must be in time
    order with int64 qty (signed), price and fee."""
    i128 = pl.Int128
    q, p = pl.col("qty"), pl.col("price").cast(i128)
    book = ["trader", "pair"]
    pos = q.cum_sum().over(book)
    f = fills.with_columns(_pos=pos, _prev=pos - q)
    crosses = (pl.col("_prev") != 0) & (pl.col("_prev").sign() != q.sign())
    closing = pl.when(crosses).then(pl.min_horizontal(q.abs(), pl.col("_prev").abs())).otherwise(0)
    f = f.with_columns(_close=closing).with_columns(_open=q.abs() - pl.col("_close"))
    flow = (
        pl.col("_prev").sign().cast(i128) * pl.col("_close").cast(i128) * p
        - q.sign().cast(i128) * pl.col("_open").cast(i128) * p
    )
    f = f.with_columns(
        _flow=flow,
        _end=pl.col("_pos").last().over(book),
        _later=pl.col("_open").cum_sum(reverse=True).over(book) - pl.col("_open"),
    ).with_columns(
        _left=pl.min_horizontal(pl.col("_open"), pl.col("_end").abs() - pl.col("_later")).clip(lower_bound=0)
    )
    books = f.group_by(book).agg(
        flow=pl.col("_flow").sum(),
        fees=pl.col("fee").cast(i128).sum(),
        closed=pl.col("_close").sum(),
        open_qty=pl.col("_end").first(),
        open_cost=(pl.col("_left").cast(i128) * p).sum(),
    )
    realized = pl.col("flow") + pl.col("open_qty").sign().cast(i128) * pl.col("open_cost")
    return books.with_columns(realized=realized).drop("flow").sort(book)


def book_rows(books: pl.DataFrame) -> list[list[str]]:
    """The CSV rows `FifoLedger.rows()` prints, from `fifo_books`."""
    out = []
    for trader, pair, fees, closed, open_qty, cost, realized in books.select(
        "trader", "pair", "fees", "closed", "open_qty", "open_cost", "realized"
    ).iter_rows():
        avg = ""
        if open_qty:
            mean = (Decimal(cost) / Decimal(abs(open_qty))).scaleb(-PRICE_DECIMALS)
            avg = _fmt(mean.quantize(Decimal(1).scaleb(-PRICE_DECIMALS)))
        out.append(
            [
                trader,
                pair,
                _dec(realized, QTY_DECIMALS + PRICE_DECIMALS),
                _dec(fees, FEE_DECIMALS),
                _dec(closed, QTY_DECIMALS),
                _dec(open_qty, QTY_DECIMALS),
                avg,
            ]
        )
    return out


def fifo_rows(fills: pl.DataFrame) -> list[list[str]]:
    """Rows for the whole file: columnar when every integer fits 64 bits with room for the
    sums, else the exact Python ledger (values no venue produces, but still exact)."""
    ints = [fills[c] for c in ("qty", "price", "fee")]
    if fills.is_empty():
        return []
    if all(s.dtype == pl.Int64 for s in ints):
        total_qty = int(fills["qty"].abs().cast(pl.Int128).sum())
        if total_qty < _INT64_SAFE and int(ints[1].max()) < _INT64_SAFE and int(ints[2].max()) < _INT64_SAFE:
            return book_rows(fifo_books(fills))
    ledger = FifoLedger()
    ledger.apply_arrays(*(fills[c].to_list() for c in ("trader", "pair", "qty", "price", "fee")))
    return [[str(r[c]) for c in OUTPUT_COLUMNS] for r in ledger.rows()]
