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
_RANK = {"open": 0, "margin_update": 1, "tp_sl_update": 1, "cancel": 1, "partial_close": 2}
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
                # Closes never use the price: the ledger only refuses an open without a positive one.
                price=None if r["price_ok"] is None else Decimal(1 if r["price_ok"] else 0),
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


def _times_e10(size: np.ndarray, lev_e10: np.ndarray) -> np.ndarray:
    """size * lev_e10 // 1e10, exactly, in int64: the leverage split into whole units and two
    5-digit parts keeps every partial product far from 64 bits (Python integers past that)."""
    if (len(size) and int(np.abs(size).max()) >= 2**46) or (len(lev_e10) and int(lev_e10.max()) >= 2**46):
        return (_times(size, lev_e10) // _E10).astype(np.int64)
    whole, frac = np.divmod(lev_e10, _E10)
    hi, lo = np.divmod(frac, 100_000)
    a, b = size * hi, size * lo  # both < 2**46 * 1e5
    return size * whole + a // 100_000 + ((a % 100_000) * 100_000 + b) // _E10


def _times(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a * b exactly: int64 when it cannot overflow, Python integers otherwise."""
    if len(a) and int(np.abs(a).max()) * int(np.abs(b).max()) >= _SAFE:
        return a.astype(object) * b.astype(object)
    return a * b


_KEY = ["trader", "pair_index", "trade_index", "open_ts"]


def _ledger_sorted(events: pl.DataFrame) -> pl.DataFrame:
    """Events grouped by position (`pos`, 0..n-1), each position's events in ledger order, with
    `seq` = the event's place in global ledger order (by time, then opens first). The position
    is numbered from a 64-bit hash of its identity and the rows sorted on one integer key (a sort
    on several columns, a trader string among them, took seconds); a hash collision is detected
    (two identities under one number) and then the exact, slower numbering is used."""
    ev = events.filter(~pl.col("kind").is_in(_NO_PNL))
    if ev.is_empty():
        return ev.with_columns(pos=pl.lit(0, pl.Int64), seq=pl.lit(0, pl.Int64))
    rank = pl.col("kind").replace_strict(_RANK, default=4, return_dtype=pl.Int64)
    t0 = int(ev["ts"].min())
    ev = ev.with_columns(when=(pl.col("ts") - t0) * 8 + rank)
    for exact in (False, True):
        identity = pl.struct(_KEY)
        number = identity.rank("dense") if exact else identity.hash().rank("dense")
        ev = ev.with_columns(pos=number.cast(pl.Int64) - 1)
        if int(ev["when"].max()) < 2**36 and ev["pos"].max() < 2**26:  # both in one int64
            ev = ev.with_columns(_k=pl.col("pos") * 2**36 + pl.col("when"))
            # Two events of one position in the same second and rank are rare: only then does
            # the event id (a string sort, slow) have to decide.
            ev = (ev.sort("_k", "event_id") if ev["_k"].is_duplicated().any() else ev.sort("_k")).drop("_k")
        else:
            ev = ev.sort("pos", "when", "event_id")
        same_pos = pl.col("pos") == pl.col("pos").shift()
        mixed = ev.select((same_pos & ~pl.all_horizontal(pl.col(k) == pl.col(k).shift() for k in _KEY)).any())
        if not mixed.item():
            break
    # Global order of the closes (the tracker's): by time and kind; ties keep a fixed order.
    return ev.with_columns(seq=pl.col("when"))


def realized_closes(events: pl.DataFrame) -> pl.DataFrame:
    """One row per close the ledger realizes (`CLOSES_SCHEMA` plus event_id), in ledger order
    (by time, opens first). `events` has `LEDGER_SCHEMA` columns in any order; each position
    must be complete up to the closes asked about (its open and every earlier close)."""
    ev = _ledger_sorted(events)
    pos = ev["pos"].to_numpy()
    n_pos = int(pos.max()) + 1 if len(pos) else 0
    kinds = ev["kind"]
    is_close_s = kinds.is_in(_CLOSING)
    is_close = is_close_s.to_numpy()
    is_open_ev = (kinds == "open").to_numpy()
    starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]]) if len(pos) else np.array([], dtype=np.int64)
    # Array path: no margin update, at most one open and only as the first event.
    opens = np.bincount(pos, weights=is_open_ev, minlength=n_pos)
    odd = np.bincount(pos, weights=~is_close & ~is_open_ev, minlength=n_pos)
    first_is_open = is_open_ev[starts]
    fallback = (odd > 0) | (opens > 1) | ((opens == 1) & ~first_is_open)

    first = ev[starts]
    is_open = first_is_open
    coll = first["collateral_usdc"].fill_null(-1).to_numpy().copy()
    fee = np.where(is_open, first["open_fee_usdc"].fill_null(0).to_numpy(), 0)
    lev = first["leverage_e10"].fill_null(-1).to_numpy().copy()
    opened_at = first["open_ts"].to_numpy()
    long = (first["side"] == "long").fill_null(False).to_numpy()
    has_side = first["side"].is_not_null().to_numpy()
    price_ok = first["price_ok"].fill_null(False).to_numpy()
    # An open the ledger would refuse, or a first close it cannot adopt: reference path.
    fallback |= ~has_side | (coll <= 0) | (lev <= 0) | (is_open & ~price_ok)

    closes = ev.filter(is_close_s)
    close_rows = np.flatnonzero(is_close)
    close_rank = np.cumsum(is_close) - 1  # index among all closes, then within the position:
    first_close = np.searchsorted(close_rows, starts)
    c_pos = pos[close_rows]
    c_rank = close_rank[close_rows] - first_close[c_pos]
    c_size = closes["size_closed_usdc"].fill_null(-1).to_numpy()
    c_sent = closes["usdc_sent"].fill_null(-1).to_numpy()
    c_liq = (closes["kind"] == "liquidation").to_numpy()
    c_lev = closes["leverage_e10"].fill_null(0).to_numpy()
    # A leverage too large for 1e-10 integers: exact only through the reference path.
    fallback[c_pos[(closes["leverage"].is_not_null() & closes["leverage_e10"].is_null()).to_numpy()]] = True
    n = closes.height
    realized = np.zeros(n, dtype=np.int64)
    notional = np.zeros(n, dtype=np.int64)
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
        notional[idx] = _times_e10(size, lev_used)
    keep = ~fallback[c_pos]
    fast = closes.select(
        "event_id",
        "seq",
        "trader",
        "ts",
        pl.Series("realized_usdc", realized),
        pl.Series("notional_usdc", notional),
        pl.col("size_closed_usdc").alias("collateral_usdc"),
        pl.Series("leverage", used_lev / _E10),
        pl.Series("hold_seconds", closes["ts"].to_numpy() - opened_at[c_pos]),
        pl.col("pair_index"),
        pl.Series("is_long", long[c_pos]),
    ).filter(pl.Series(keep))
    slow_positions = np.flatnonzero(fallback)
    if len(slow_positions):
        slow_events = ev.filter(pl.col("pos").is_in(slow_positions.tolist())).sort("seq", "event_id")
        seqs = dict(zip(slow_events["event_id"], slow_events["seq"], strict=True))
        slow = _ledger_closes(slow_events.select(list(LEDGER_COLUMNS)))
        slow = slow.with_columns(seq=pl.col("event_id").replace_strict(seqs, return_dtype=pl.Int64))
        fast = pl.concat([fast, slow.select(fast.columns)], how="vertical_relaxed")
    return (
        fast.sort("seq", maintain_order=True)
        .drop("seq")
        .with_columns(pl.col(c).cast(t) for c, t in CLOSES_SCHEMA.items() if c != "trader")
        .with_columns(pl.col("trader").cast(pl.Categorical))
    )
