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
    if data.isascii():  # the usual file, checked at memory speed: ASCII is UTF-8
        return data
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


def _amount_parts(col: str, decimals: int) -> dict[str, pl.Expr]:
    """The two parts of a plain decimal such as `123.456` or `-0.5`: its digits without the
    point as one native integer cast (which takes only an optional sign and ASCII digits), and
    10 ** (decimals - digits after the point), null when there are more than `decimals`.
    Exponents, spaces and the like give a null: the row parser accepts or names them."""
    text = pl.col(col)
    after_point = (text.str.len_bytes() - text.str.find(".", literal=True) - 1).fill_null(0)
    scales = pl.Series([10 ** (decimals - k) for k in range(decimals + 1)] + [None], dtype=pl.Int64)
    return {
        f"_{col}_digits": text.str.replace(".", "", literal=True).cast(pl.Int64, strict=False),
        f"_{col}_scale": pl.lit(scales).gather(after_point.clip(upper_bound=decimals + 1)),
    }


def _amount(col: str) -> tuple[pl.Expr, pl.Expr]:
    """(well-formed, scaled integer) from `_amount_parts`' columns: well-formed when the scaled
    value fits 64 bits with room for sums (|value| < 1e18). The sign is kept, so the caller's
    range checks see it."""
    digits, scale = pl.col(f"_{col}_digits"), pl.col(f"_{col}_scale")
    well_formed = digits.is_not_null() & scale.is_not_null() & (digits.abs() < (10**18) // scale)
    return well_formed, digits * scale


def _names_ok(raw: pl.DataFrame, col: str) -> pl.Expr:
    """True where the name needs no cleaning: 1..MAX_FIELD printable ASCII characters without
    outer spaces. Checked once per distinct name (a file has few traders and pairs), not per row."""
    names = raw.get_column(col).drop_nulls().unique().cast(pl.Utf8)
    clean = names.str.len_bytes().is_between(1, MAX_FIELD) & names.str.contains(
        r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$"
    )
    bad = names.filter(~clean)
    return pl.col(col).is_not_null() & (
        ~pl.col(col).cast(pl.Utf8).is_in(bad.implode()) if len(bad) else pl.lit(True)
    )


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
    lines = pl.scan_csv(
        data,
        infer_schema=False,
        quote_char=None,
        truncate_ragged_lines=True,
        raise_if_empty=False,
        row_index_name="__row",
    )
    try:
        names = {c.strip(): c for c in lines.collect_schema().names() if c != "__row"}
    except pl.exceptions.PolarsError as exc:
        raise FillError(f"not a CSV file: {str(exc).splitlines()[0]}") from None
    if not set(FILL_COLUMNS) <= set(names):
        raise FillError(f"header must contain {','.join(FILL_COLUMNS)}")
    raw = lines.select(pl.col("__row"), *(pl.col(names[c]).alias(c) for c in FILL_COLUMNS))
    qty_ok, qty = _amount("qty")
    price_ok, price = _amount("price")
    fee_ok, fee = _amount("fee")
    ts = pl.col("ts").cast(pl.Int64, strict=False)  # whole epoch seconds; the rest, row by row
    # The fast path takes only what needs no cleaning: printable ASCII names without outer
    # spaces, lower-case sides, plain numbers. Anything else (spaces, ISO times, exponents,
    # upper case, non-ASCII) is for the row parser to accept or name.
    well_formed = (
        qty_ok
        & price_ok
        & fee_ok
        & ts.is_between(0, MAX_TS - 1)
        & pl.col("side").is_in(["buy", "sell"])
        & (qty > 0)
        & (price > 0)
        & (fee >= 0)
    ).fill_null(False)
    parts = {
        **_amount_parts("qty", QTY_DECIMALS),
        **_amount_parts("price", PRICE_DECIMALS),
        **_amount_parts("fee", FEE_DECIMALS),
    }
    try:
        # Streamed in batches: the text columns never exist for the whole file at once.
        checked = (
            raw.with_columns(**parts)
            .select(
                line=pl.col("__row").cast(pl.Int64) + 2,
                # Few distinct names: dictionary codes, not a string per row.
                trader=pl.col("trader").cast(pl.Categorical),
                pair=pl.col("pair").cast(pl.Categorical),
                ts=ts,
                qty=pl.when(pl.col("side") == "buy").then(qty).otherwise(-qty),
                price=price,
                fee=fee,
                _ok=well_formed,
                _empty=pl.all_horizontal(pl.col(c).is_null() for c in FILL_COLUMNS),
            )
            .collect(engine="streaming")
        )
    except pl.exceptions.PolarsError as exc:
        raise FillError(f"not a CSV file: {str(exc).splitlines()[0]}") from None
    if checked.get_column("_empty").any():
        checked = checked.filter(~_blank_lines(checked, data))
    ok = checked.select(pl.col("_ok") & _names_ok(checked, "trader") & _names_ok(checked, "pair")).to_series()
    checked = checked.drop("_empty")
    if ok.all():
        return _in_time_order(checked.drop("_ok")), sorted(errors)
    fast = checked.filter(ok).drop("_ok")
    # Everything else, row by row through the reference parser: accepted, or named.
    slow_rows = raw.filter(pl.col("__row").is_in((checked.filter(~ok)["line"] - 2).implode())).collect()
    slow, slow_lines = [], []
    for row in slow_rows.iter_rows(named=True):
        line = row.pop("__row") + 2
        try:
            slow.append(parse_fill({k: v or "" for k, v in row.items()}))
            slow_lines.append(line)
        except FillError as exc:
            errors.append((line, str(exc)))
    fills = pl.concat([fast, _frame_of(slow, slow_lines)], how="vertical_relaxed") if slow else fast
    return _in_time_order(fills), sorted(errors)


def _blank_lines(checked: pl.DataFrame, data: bytes) -> pl.Series:
    """Which rows are blank lines (skipped, as the row reader skips them). polars gives a blank
    line and a line of empty fields (`,,,,,,`, the row reader's "missing ...") the same nulls, so
    the lines of those rows are looked at in the text."""
    text = data.split(b"\n")
    blank = [line for line in checked.filter("_empty")["line"] if not text[line - 1].strip(b"\r")]
    return checked["line"].is_in(pl.Series(blank, dtype=pl.Int64).implode()) & checked["_empty"]


def _in_time_order(fills: pl.DataFrame) -> pl.DataFrame:
    """By time; fills in the same second keep their order in the file (most files are in time
    order already: then there is nothing to sort)."""
    if fills.get_column("ts").is_sorted() and fills.get_column("line").is_sorted():
        return fills
    return fills.sort("ts", "line")


def fifo_books(fills: pl.DataFrame) -> pl.DataFrame:
    """Per (trader, pair): realized (before fees), fees, closed and open quantity, and the cost
    of the open lots; all exact integers in the units of `research.fifo`. `fills` must be in time
    order with int64 qty (signed), price and fee.

    One lazy query over a book number (the dictionary codes of trader and pair: exact, and an
    integer to group on instead of two strings). Each fill's units are valued once at its price:
    + what it closes (at the sign the position had), - what it opens, + what of it is still open
    at the end (at the end position's sign), so realized = sum(units * price) in Int128."""
    i128 = pl.Int128
    q = pl.col("qty")
    code = [pl.col(c).cast(pl.Categorical).to_physical().cast(pl.Int64) for c in ("trader", "pair")]
    crosses = (pl.col("_prev") != 0) & (pl.col("_prev").sign() != q.sign())
    units = q.sign() * -pl.col("_open") + pl.col("_prev").sign() * pl.col("_close")
    books = (
        fills.lazy()
        .select("trader", "pair", "qty", "price", "fee", _book=code[0] * 2**32 + code[1])
        .with_columns(_pos=q.cum_sum().over("_book"))
        .with_columns(_prev=pl.col("_pos") - q, _end=pl.col("_pos").last().over("_book"))
        .with_columns(
            _close=pl.when(crosses).then(pl.min_horizontal(q.abs(), pl.col("_prev").abs())).otherwise(0)
        )
        .with_columns(_open=q.abs() - pl.col("_close"))
        .with_columns(_later=pl.col("_open").cum_sum(reverse=True).over("_book") - pl.col("_open"))
        .with_columns(
            _left=pl.min_horizontal(pl.col("_open"), pl.col("_end").abs() - pl.col("_later")).clip(
                lower_bound=0
            )
        )
        .group_by("_book")
        .agg(
            pl.col("trader").first(),
            pl.col("pair").first(),
            realized=(
                (units + pl.col("_end").sign() * pl.col("_left")).cast(i128) * pl.col("price").cast(i128)
            ).sum(),
            fees=pl.col("fee").cast(i128).sum(),
            closed=pl.col("_close").sum(),
            open_qty=pl.col("_end").first(),
            open_cost=(pl.col("_left").cast(i128) * pl.col("price").cast(i128))
            .filter(pl.col("_left") > 0)
            .sum(),
        )
        .drop("_book")
        .sort("trader", "pair")
    )
    return books.collect()


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
