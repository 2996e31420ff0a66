"""Canonical events as columns: the Parquet/DuckDB layout of `TradeEvent`.

Prices, leverage, TP and SL are stored as integers of 1e-10 and money as integer micro-USDC, so a
file round-trips to exactly the events that were written.
"""

from __future__ import annotations

from decimal import Decimal

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
