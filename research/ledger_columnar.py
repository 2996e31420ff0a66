"""Realized closes from canonical events as columns: what `PositionLedger` computes for the
statistics, without a Python object per event.

Most positions are an open (or a close whose open predates the data) followed by closes. For
those the ledger's only state is the collateral left and the opening fee not yet attributed, so
the closes are applied rank by rank: the first close of every position at once, then the second,
and so on, each step a handful of array operations over all positions. The fee share keeps the
ledger's exact integer rule (pro rata, rounded down, the last close takes the rest), in Python
integers where a product could pass 64 bits. Every other position (increases, margin updates,
events the ledger refuses, closes after the end, two events of one position at the same moment)
goes through `PositionLedger` itself, so the result is the ledger's to the micro-USDC; a
property test holds the two paths equal.

The events are put in position order without moving the frame: one sort of two integer columns
(a 64-bit hash of the position's identity, then time) gives the row order, and only the numeric
columns the arrays need are gathered by it.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import polars as pl

from data.event_frames import LEDGER_SCHEMA
from data.events import EventKind, Side, TradeEvent
from research.ledger import PositionLedger
from research.stats import CLOSES_SCHEMA

# The caller provides `LEDGER_SCHEMA` columns, in any order. `event_id` may be null except where
# two events of one position share a moment (same second and kind rank): only their ids order them.
LEDGER_COLUMNS = LEDGER_SCHEMA
_KEY = ["trader", "pair_index", "trade_index", "open_ts"]
# Kinds as codes: what the arrays do with each, and its rank among events of one second.
_OPEN, _MARGIN, _PARTIAL, _CLOSE, _LIQUIDATION, _NO_PNL, _UNKNOWN = range(7)
_KIND_CODE = {
    EventKind.OPEN.value: _OPEN,
    EventKind.MARGIN_UPDATE.value: _MARGIN,
    EventKind.PARTIAL_CLOSE.value: _PARTIAL,
    EventKind.CLOSE.value: _CLOSE,
    EventKind.TP.value: _CLOSE,
    EventKind.SL.value: _CLOSE,
    EventKind.LIQUIDATION.value: _LIQUIDATION,
    EventKind.TP_SL_UPDATE.value: _NO_PNL,  # realize nothing: left out
    EventKind.CANCEL.value: _NO_PNL,
}
_RANK_OF_CODE = np.array([0, 1, 2, 3, 3, 1, 4], dtype=np.int64)  # as `data.store.KIND_RANK`
_E10 = 10**10
_SAFE = 2**62
_NO_ID = "\x00"  # ids given to events without one for the reference path (PostgreSQL text has no NUL)


class TiedEvents(ValueError):
    """Events of one position at one moment (same second and kind rank) arrived without their
    ids, which alone order them: the caller fetches the ids of `rows` and asks again."""

    def __init__(self, rows: pl.DataFrame):
        super().__init__(f"{rows.height} events of one position at one moment need their event ids")
        self.rows = rows


def _events(frame: pl.DataFrame) -> list[TradeEvent]:
    out = []
    for r in frame.iter_rows(named=True):
        leverage = r["leverage"]
        if leverage is None and r["leverage_e10"] is not None:
            leverage = Decimal(r["leverage_e10"]).scaleb(-10)
        out.append(
            TradeEvent(
                event_id=r["event_id"],
                venue="",
                source="",
                trader=str(r["trader"]),
                pair_index=r["pair_index"],
                kind=EventKind(str(r["kind"])),
                trade_index=r["trade_index"],
                open_ts=r["open_ts"],
                ts=r["ts"],
                side=Side(str(r["side"])) if r["side"] is not None else None,
                collateral_usdc=r["collateral_usdc"],
                leverage=Decimal(leverage) if leverage is not None else None,
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
    """The reference path, for the positions the array path leaves out: `frame` in ledger order
    with a unique `event_id` each; one row per close, with its `event_id`."""
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


def _position_order(identity: pl.DataFrame, when: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order of the rows grouped by position, each position's rows by `when`; where the
    position changes between consecutive rows of that order). Positions are told apart by a
    64-bit hash of their identity; two identities under one hash are detected (an identity
    column changes inside a run of one hash) and then the exact, slower order is used."""
    hashed = identity.with_columns(_h=pl.struct(*_KEY).hash())["_h"].to_numpy()
    order = pl.DataFrame({"h": hashed, "w": when}).select(pl.arg_sort_by("h", "w")).to_series().to_numpy()
    changed = _changes(identity, order)
    h = hashed[order]
    if (changed & (h[1:] == h[:-1])).any():  # a collision: order by the identity itself
        order = identity.with_columns(w=when).select(pl.arg_sort_by(*_KEY, "w")).to_series().to_numpy()
        changed = _changes(identity, order)
    return order, changed


def realized_closes(events: pl.DataFrame) -> pl.DataFrame:
    """One row per close the ledger realizes (`CLOSES_SCHEMA` plus event_id), in ledger order
    (by time, opens first). `events` has `LEDGER_SCHEMA` columns in any order; each position
    must be complete up to the closes asked about (its open and every earlier close)."""
    empty = pl.DataFrame(schema={"event_id": pl.Utf8, **CLOSES_SCHEMA})
    if events.is_empty():
        return empty
    code = (
        events.select(pl.col("kind").replace_strict(_KIND_CODE, default=_UNKNOWN, return_dtype=pl.Int8))
        .to_series()
        .to_numpy()
    )
    keep = np.flatnonzero(code != _NO_PNL)
    if not len(keep):
        return empty
    if len(keep) < len(code):
        events, code = events[keep], code[keep]
    ts_all = events["ts"].to_numpy()
    when_all = (ts_all - ts_all.min()) * 8 + _RANK_OF_CODE[code]
    # The identity as integers (the trader by its dictionary code).
    identity = events.select(*_KEY).with_columns(pl.col("trader").cast(pl.Categorical).to_physical())
    rows, changed = _position_order(identity, when_all)  # row numbers in position, time order
    c = code[rows]
    when = when_all[rows]
    new_position = np.r_[True, changed]
    pos = np.cumsum(new_position) - 1
    n_pos = int(pos[-1]) + 1
    starts = np.flatnonzero(new_position)
    is_open_ev = c == _OPEN
    is_close = (c == _PARTIAL) | (c == _CLOSE) | (c == _LIQUIDATION)
    # Array path: no margin update, at most one open and only as the first event, no two events
    # at one moment (only their ids could order them).
    opens = np.bincount(pos, weights=is_open_ev, minlength=n_pos)
    odd = np.bincount(pos, weights=~is_close & ~is_open_ev, minlength=n_pos)
    first_is_open = is_open_ev[starts]
    fallback = (odd > 0) | (opens > 1) | ((opens == 1) & ~first_is_open)
    tied = (pos[1:] == pos[:-1]) & (when[1:] == when[:-1])
    if tied.any():
        at_moment = rows[np.union1d(np.flatnonzero(tied), np.flatnonzero(tied) + 1)]
        if events["event_id"].gather(at_moment).is_null().any():
            raise TiedEvents(events[at_moment])
        fallback[pos[1:][tied]] = True

    first = rows[starts]
    is_open = first_is_open
    coll = events["collateral_usdc"].fill_null(-1).to_numpy()[first].copy()
    fee = np.where(is_open, events["open_fee_usdc"].fill_null(0).to_numpy()[first], 0)
    lev_all = events["leverage_e10"].fill_null(-1).to_numpy()
    lev = lev_all[first].copy()
    opened_at = events["open_ts"].to_numpy()[first]
    side = events["side"].cast(pl.Utf8)
    long = (side == "long").fill_null(False).to_numpy()[first]
    has_side = side.is_not_null().to_numpy()[first]
    price_ok = events["price_ok"].fill_null(False).to_numpy()[first]
    # An open the ledger would refuse, or a first close it cannot adopt: reference path.
    fallback |= ~has_side | (coll <= 0) | (lev <= 0) | (is_open & ~price_ok)

    at = np.flatnonzero(is_close)  # closes, by position then time
    close_rows = rows[at]
    c_pos = pos[at]
    c_rank = np.arange(len(at)) - np.searchsorted(at, starts)[c_pos]  # index among its position's closes
    c_size = events["size_closed_usdc"].fill_null(-1).to_numpy()[close_rows]
    c_sent = events["usdc_sent"].fill_null(-1).to_numpy()[close_rows]
    c_liq = c[at] == _LIQUIDATION
    c_lev = np.where(lev_all[close_rows] > 0, lev_all[close_rows], 0)
    # A leverage too large for 1e-10 integers: exact only through the reference path.
    huge = events.select(pl.col("leverage").is_not_null() & pl.col("leverage_e10").is_null()).to_series()
    if huge.any():
        fallback[c_pos[huge.to_numpy()[close_rows]]] = True
    n = len(at)
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
    keep_close = ~fallback[c_pos]
    fast_rows = close_rows[keep_close]
    fast = events.select(
        pl.col("event_id").gather(fast_rows),
        pl.col("trader").gather(fast_rows).cast(pl.Categorical),
        pl.col("ts").gather(fast_rows),
    ).with_columns(
        realized_usdc=pl.Series(realized[keep_close]),
        notional_usdc=pl.Series(notional[keep_close]),
        collateral_usdc=pl.Series(c_size[keep_close]),
        leverage=pl.Series(used_lev[keep_close] / _E10),
        hold_seconds=pl.Series(ts_all[fast_rows] - opened_at[c_pos[keep_close]]),
        pair_index=pl.Series(events["pair_index"].to_numpy()[fast_rows]),
        is_long=pl.Series(long[c_pos[keep_close]]),
        seq=pl.Series(when[at][keep_close]),
    )
    slow_at = np.flatnonzero(fallback[pos])
    if len(slow_at):
        fast = pl.concat(
            [fast, _reference_closes(events, rows[slow_at], when[slow_at])], how="vertical_relaxed"
        )
    return (
        fast.sort("seq", maintain_order=True)
        .drop("seq")
        .with_columns(pl.col(c).cast(t) for c, t in CLOSES_SCHEMA.items() if c != "trader")
    )


def _changes(identity: pl.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Where the position changes between consecutive `rows` (which are grouped by position)."""
    changed = np.zeros(max(len(rows) - 1, 0), dtype=bool)
    for col in _KEY:
        v = identity[col].to_numpy()[rows]
        changed |= v[1:] != v[:-1]
    return changed


def _reference_closes(events: pl.DataFrame, rows: np.ndarray, when: np.ndarray) -> pl.DataFrame:
    """The closes `PositionLedger` realizes from these rows (whole positions), with their
    moment for ordering; events at one moment go in the order of their ids."""
    frame = events[rows].with_columns(_when=pl.Series(when), _row=pl.Series(rows))
    if frame["event_id"].is_null().any():  # (never two at one moment: `TiedEvents` saw to that)
        frame = frame.with_columns(event_id=pl.coalesce("event_id", _NO_ID + pl.col("_row").cast(pl.Utf8)))
    frame = frame.sort("_when", "event_id")
    seqs = dict(zip(frame["event_id"], frame["_when"], strict=True))
    slow = _ledger_closes(frame.select(list(LEDGER_COLUMNS)))
    return slow.with_columns(
        seq=pl.col("event_id").replace_strict(seqs, return_dtype=pl.Int64),
        event_id=pl.when(pl.col("event_id").str.starts_with(_NO_ID)).then(None).otherwise(pl.col("event_id")),
    )
