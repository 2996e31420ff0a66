"""Canonical events as columns: the Parquet/DuckDB layout of `TradeEvent`.

Prices, leverage, TP and SL are stored as integers of 1e-10 and money as integer micro-USDC, so a
file round-trips to exactly the events that were written.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl

from data.events import EventKind, Side, TradeEvent

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.Utf8(),
    "venue": pl.Utf8(),
    "source": pl.Utf8(),
    "trader": pl.Utf8(),
    "pair_index": pl.Int32(),
    "pair": pl.Utf8(),
    "kind": pl.Utf8(),
    "trade_index": pl.Int32(),
    "open_ts": pl.Int64(),
    "ts": pl.Int64(),
    "side": pl.Utf8(),
    "collateral_usdc": pl.Int64(),
    "leverage_e10": pl.Int64(),
    "price_e10": pl.Int64(),
    "size_closed_usdc": pl.Int64(),
    "open_fee_usdc": pl.Int64(),
    "close_fee_usdc": pl.Int64(),
    "rollover_fee_usdc": pl.Int64(),
    "loss_protection_usdc": pl.Int64(),
    "usdc_sent": pl.Int64(),
    "gross_pnl_usdc": pl.Int64(),
    "tp_e10": pl.Int64(),
    "sl_e10": pl.Int64(),
}
EVENT_COLUMNS = list(EVENT_SCHEMA)

# What a ledger needs of each event to realize closes, as columns (`data.window_events`,
# `research.ledger_columnar`): decimals as their exact text, leverage also in 1e-10 units.
LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.Utf8(),
    "trader": pl.Utf8(),
    "pair_index": pl.Int32(),
    "trade_index": pl.Int64(),
    "kind": pl.Utf8(),
    "side": pl.Utf8(),
    "ts": pl.Int64(),
    "open_ts": pl.Int64(),
    "collateral_usdc": pl.Int64(),
    "leverage": pl.Utf8(),
    "leverage_e10": pl.Int64(),  # null when it does not fit
    "price_ok": pl.Boolean(),  # present and positive: all the ledger asks of a price for closes
    "size_closed_usdc": pl.Int64(),
    "open_fee_usdc": pl.Int64(),
    "close_fee_usdc": pl.Int64(),
    "rollover_fee_usdc": pl.Int64(),
    "usdc_sent": pl.Int64(),
}


def ledger_frame(events: list[TradeEvent]) -> pl.DataFrame:
    """Events (already in ledger order) as `LEDGER_SCHEMA` columns, as PostgreSQL gives them."""

    def e10(d: Decimal | None) -> int | None:
        return None if d is None or d >= 100_000_000 else int(d * 10**10)

    return pl.DataFrame(
        [
            (
                e.event_id,
                e.trader.lower(),
                e.pair_index,
                e.trade_index,
                e.kind.value,
                e.side.value if e.side else None,
                e.ts,
                e.open_ts,
                e.collateral_usdc,
                None if e.leverage is None else str(e.leverage),
                e10(e.leverage),
                None if e.price is None else e.price > 0,
                e.size_closed_usdc,
                e.open_fee_usdc,
                e.close_fee_usdc,
                e.rollover_fee_usdc,
                e.usdc_sent,
            )
            for e in events
        ],
        schema=LEDGER_SCHEMA,
        orient="row",
    )


def _dec(v: int | None) -> Decimal | None:
    return None if v is None else Decimal(v).scaleb(-10)


def events_from_frame(frame: pl.DataFrame) -> list[TradeEvent]:
    out = []
    for r in frame.select(EVENT_COLUMNS).iter_rows():
        (
            event_id,
            venue,
            source,
            trader,
            pair_index,
            pair,
            kind,
            trade_index,
            open_ts,
            ts,
            side,
            collateral,
            lev,
            price,
            closed,
            open_fee,
            close_fee,
            rollover,
            lp,
            sent,
            gross,
            tp,
            sl,
        ) = r
        out.append(
            TradeEvent(
                event_id=event_id,
                venue=venue,
                source=source,
                trader=trader,
                pair_index=pair_index,
                pair=pair,
                kind=EventKind(kind),
                trade_index=trade_index,
                open_ts=open_ts,
                ts=ts,
                side=Side(side) if side else None,
                collateral_usdc=collateral,
                leverage=_dec(lev),
                price=_dec(price),
                size_closed_usdc=closed,
                open_fee_usdc=open_fee,
                close_fee_usdc=close_fee,
                rollover_fee_usdc=rollover,
                loss_protection_usdc=lp,
                usdc_sent=sent,
                gross_pnl_usdc=gross,
                tp=_dec(tp),
                sl=_dec(sl),
            )
        )
    return out


class FrameError(ValueError):
    """A file or frame that is not canonical events; the message names the file, row or column."""


MIN_TS, MAX_TS = 0, 4_102_444_800  # epoch seconds up to 2100-01-01
# Row checks: (what must hold, what the message says). Money columns are micro-USDC bigints;
# leverage and prices 1e-10 integers, positive where present.
_ROW_CHECKS: list[tuple[pl.Expr, str]] = [
    (
        pl.col("event_id").is_not_null() & (pl.col("event_id").str.len_chars().is_between(1, 200)),
        "event_id missing or longer than 200 characters",
    ),
    (
        pl.col("trader").str.contains(r"^0x[0-9a-fA-F]{40}$").fill_null(False),
        "trader is not a 0x address of 40 hex digits",
    ),
    (
        pl.col("kind").is_in([k.value for k in EventKind]).fill_null(False),
        "kind is not one of " + ", ".join(k.value for k in EventKind),
    ),
    (pl.col("side").is_null() | pl.col("side").is_in([s.value for s in Side]), "side is not long or short"),
    (pl.col("pair_index").is_between(0, 9_999).fill_null(False), "pair_index missing or outside 0..9999"),
    (pl.col("trade_index").is_between(0, 2**31 - 1).fill_null(False), "trade_index missing or negative"),
    (pl.col("ts").is_between(MIN_TS, MAX_TS).fill_null(False), "ts missing or outside 1970..2100"),
    (pl.col("open_ts").is_between(MIN_TS, MAX_TS).fill_null(False), "open_ts missing or outside 1970..2100"),
    (
        pl.col("leverage_e10").is_null() | pl.col("leverage_e10").is_between(1, 1000 * 10**10),
        "leverage outside (0, 1000]",
    ),
    (pl.col("price_e10").is_null() | (pl.col("price_e10") > 0), "price must be positive"),
    (
        pl.all_horizontal(
            pl.col(c).is_null() | (pl.col(c) >= 0)
            for c in (
                "collateral_usdc",
                "size_closed_usdc",
                "open_fee_usdc",
                "close_fee_usdc",
                "usdc_sent",
                "loss_protection_usdc",
            )
        ),
        "a money column (collateral, size closed, fees, usdc_sent) is negative",
    ),
]


def check_frame(frame: pl.DataFrame, origin: str) -> pl.DataFrame:
    """The frame cast to `EVENT_SCHEMA` and checked row by row; the first fault is raised with
    its row number (0-based, as in the file) and how many rows share it."""
    missing = [c for c in EVENT_COLUMNS if c not in frame.columns]
    if missing:
        raise FrameError(f"{origin}: missing columns {', '.join(missing)}")
    try:
        frame = frame.select(pl.col(c).cast(t, strict=True) for c, t in EVENT_SCHEMA.items())
    except pl.exceptions.PolarsError as exc:
        raise FrameError(f"{origin}: a column has the wrong type: {str(exc).splitlines()[0]}") from None
    for condition, message in _ROW_CHECKS:
        bad = frame.select(pl.arg_where(~condition)).to_series()
        if bad.len():
            raise FrameError(f"{origin}: row {bad[0]}: {message} ({bad.len()} such rows)")
    return frame


def read_events(path: Path) -> list[TradeEvent]:
    """Canonical events from a Parquet file (e.g. `vanta simulate`'s), checked; every way the
    file can be unreadable is a one-line `FrameError` naming it."""
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # polars, arrow and the OS each have their own error types here
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise FrameError(f"{path}: not a readable Parquet file: {first}") from None
    return events_from_frame(check_frame(frame, str(path)))
