"""Realized closes from canonical events as columns: what `PositionLedger` computes for the
statistics, without a Python object per event.

Most positions are an open (or a close whose open predates the data) followed by closes. For
those the ledger's only state is the collateral left and the opening fee not yet attributed, so
the closes are applied rank by rank: the first close of every position at once, then the second,
and so on, each step a handful of array operations over all positions. The fee share keeps the
ledger's exact integer rule (pro rata, rounded down, the last close takes the rest), in Python
integers where a product could pass 64 bits. Every other position (increases, margin updates,
events the ledger refuses, closes after the end) goes through `PositionLedger` itself, so the
result is the ledger's to the micro-USDC; a property test holds the two paths equal.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import polars as pl

from data.event_frames import LEDGER_SCHEMA
from data.events import CLOSING_KINDS, EventKind, Side, TradeEvent
from research.ledger import PositionLedger
from research.stats import CLOSES_SCHEMA

# The caller provides `LEDGER_SCHEMA` columns in ledger order (by time, opens first, event id).
LEDGER_COLUMNS = LEDGER_SCHEMA
_CLOSING = [k.value for k in CLOSING_KINDS]
_NO_PNL = [EventKind.TP_SL_UPDATE.value, EventKind.CANCEL.value]
_E10 = 10**10
_SAFE = 2**62


def _events(frame: pl.DataFrame) -> list[TradeEvent]:
    out = []
    for r in frame.iter_rows(named=True):
        out.append(
            TradeEvent(
                event_id=r["event_id"],
                venue="",
                source="",
                trader=r["trader"],
                pair_index=r["pair_index"],
                kind=EventKind(r["kind"]),
                trade_index=r["trade_index"],
                open_ts=r["open_ts"],
                ts=r["ts"],
                side=Side(r["side"]) if r["side"] else None,
                collateral_usdc=r["collateral_usdc"],
                leverage=Decimal(r["leverage"]) if r["leverage"] is not None else None,
                price=Decimal(r["price"]) if r["price"] is not None else None,
                size_closed_usdc=r["size_closed_usdc"],
                open_fee_usdc=r["open_fee_usdc"] or 0,
                close_fee_usdc=r["close_fee_usdc"] or 0,
                rollover_fee_usdc=r["rollover_fee_usdc"] or 0,
                usdc_sent=r["usdc_sent"],
            )
        )
    return out


def _ledger_closes(frame: pl.DataFrame) -> pl.DataFrame:
    """The reference path, for the positions the array path leaves out."""
    ledger = PositionLedger()
    rows = []
    for ev in _events(frame):
        try:
            c = ledger.apply(ev)
        except (ValueError, ArithmeticError):  # refused, as the tracker refuses (and logs) it
            continue
        if c is not None:
            rows.append(
                (
                    c.event_id,
                    c.trader,
                    c.ts,
                    c.realized_pnl_usdc,
                    c.notional_usdc,
                    c.collateral_closed_usdc,
                    float(c.leverage),
                    c.hold_seconds,
                    c.pair_index,
                    c.side is Side.LONG,
                )
            )
    return pl.DataFrame(
        rows, schema={"event_id": pl.Utf8, **{k: v for k, v in CLOSES_SCHEMA.items()}}, orient="row"
    ).with_columns(pl.col("trader").cast(pl.Utf8))


def _times(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a * b exactly: int64 when it cannot overflow, Python integers otherwise."""
    if len(a) and int(np.abs(a).max()) * int(np.abs(b).max()) >= _SAFE:
        return a.astype(object) * b.astype(object)
    return a * b


def realized_closes(events: pl.DataFrame) -> pl.DataFrame:
    """One row per close the ledger realizes (`CLOSES_SCHEMA` plus event_id), in ledger order.
    `events` has `LEDGER_COLUMNS` in ledger order; each position must be complete up to the
    closes asked about (its open and every earlier close)."""
    ev = events.with_row_index("order").filter(~pl.col("kind").is_in(_NO_PNL))
    key = ["trader", "pair_index", "trade_index", "open_ts"]
    ev = ev.sort([*key, "order"]).with_columns(
        pos=pl.struct(key).rank("dense").cast(pl.Int64) - 1,
        is_close=pl.col("kind").is_in(_CLOSING),
    )
    per_pos = ev.group_by("pos", maintain_order=True).agg(
        first_kind=pl.col("kind").first(),
        opens=(pl.col("kind") == "open").sum(),
        odd=(~pl.col("is_close") & (pl.col("kind") != "open")).sum(),  # margin updates
    )
    n_pos = per_pos.height
    # Array path: no margin update, at most one open and only as the first event.
    simple = (pl.col("odd") == 0) & (
        (pl.col("opens") == 0) | ((pl.col("opens") == 1) & (pl.col("first_kind") == "open"))
    )
    fallback = np.zeros(n_pos, dtype=bool)
    fallback[per_pos.filter(~simple)["pos"].to_numpy()] = True

    first = ev.group_by("pos", maintain_order=True).first().sort("pos")
    is_open = (first["kind"] == "open").to_numpy()
    coll = first["collateral_usdc"].fill_null(-1).to_numpy().copy()
    fee = np.where(is_open, first["open_fee_usdc"].fill_null(0).to_numpy(), 0)
    lev = first["leverage_e10"].fill_null(-1).to_numpy().copy()
    opened_at = first["open_ts"].to_numpy()
    long = (first["side"] == "long").fill_null(False).to_numpy()
    has_side = first["side"].is_not_null().to_numpy()
    price_ok = first["price"].is_not_null().to_numpy()
    if price_ok.any():
        price_ok &= (
            first.select(pl.col("price").cast(pl.Decimal(38, 10), strict=False) > 0)["price"]
            .fill_null(False)
            .to_numpy()
        )
    # An open the ledger would refuse, or a first close it cannot adopt: reference path.
    fallback |= ~has_side | (coll <= 0) | (lev <= 0) | (is_open & ~price_ok)

    closes = ev.filter("is_close").with_columns(rank=pl.int_range(pl.len()).over("pos"))
    c_pos = closes["pos"].to_numpy()
    c_rank = closes["rank"].to_numpy()
    c_size = closes["size_closed_usdc"].fill_null(-1).to_numpy()
    c_sent = closes["usdc_sent"].fill_null(-1).to_numpy()
    c_liq = (closes["kind"] == "liquidation").to_numpy()
    c_lev = closes["leverage_e10"].fill_null(0).to_numpy()
    # A leverage too large for 1e-10 integers: exact only through the reference path.
    fallback[c_pos[(closes["leverage"].is_not_null() & closes["leverage_e10"].is_null()).to_numpy()]] = True
    n = closes.height
    realized = np.zeros(n, dtype=object)
    notional = np.zeros(n, dtype=object)
    used_lev = np.zeros(n, dtype=np.int64)
    closed = np.zeros(n_pos, dtype=bool)
    by_rank = np.argsort(c_rank, kind="stable")
    bounds = np.searchsorted(c_rank[by_rank], np.arange(int(c_rank.max()) + 2 if n else 1))
    for r in range(len(bounds) - 1):
        idx = by_rank[bounds[r] : bounds[r + 1]]
        p = c_pos[idx]
        size, sent = c_size[idx], c_sent[idx]
        # What the ledger refuses or re-adopts goes to the reference path, whole position.
        bad = closed[p] | (size <= 0) | (sent < 0) | (size > coll[p])
        fallback[p[bad]] = True
        full = (size == coll[p]) | c_liq[idx]
        part = _times(fee[p], size) // np.where(coll[p] > 0, coll[p], 1)
        share = np.where(full, fee[p], np.where(bad, 0, part)).astype(np.int64)  # part <= fee unless bad
        fee[p] -= share
        coll[p] = np.where(full, 0, coll[p] - size)
        closed[p] |= full
        realized[idx] = sent - size - share
        lev_used = np.where(c_lev[idx] > 0, c_lev[idx], lev[p])
        used_lev[idx] = lev_used
        notional[idx] = _times(size, lev_used) // _E10
    keep = ~fallback[c_pos]
    fast = closes.select(
        "event_id",
        "order",
        "trader",
        "ts",
        pl.Series("realized_usdc", realized.astype(np.int64)),
        pl.Series("notional_usdc", notional.astype(np.int64)),
        pl.col("size_closed_usdc").alias("collateral_usdc"),
        pl.Series("leverage", used_lev / _E10),
        pl.Series("hold_seconds", closes["ts"].to_numpy() - opened_at[c_pos]),
        pl.col("pair_index"),
        pl.Series("is_long", long[c_pos]),
    ).filter(pl.Series(keep))
    slow_positions = np.flatnonzero(fallback)
    if len(slow_positions):
        slow_events = ev.filter(pl.col("pos").is_in(slow_positions.tolist())).sort("order")
        orders = dict(zip(slow_events["event_id"], slow_events["order"], strict=True))
        slow = _ledger_closes(slow_events.select(list(LEDGER_COLUMNS)))
        slow = slow.with_columns(order=pl.col("event_id").replace_strict(orders, return_dtype=pl.UInt32))
        fast = pl.concat([fast, slow.select(fast.columns)], how="vertical_relaxed")
    return (
        fast.sort("order")
        .drop("order")
        .with_columns(pl.col(c).cast(t) for c, t in CLOSES_SCHEMA.items() if c != "trader")
        .with_columns(pl.col("trader").cast(pl.Categorical))
    )
