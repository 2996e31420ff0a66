"""The events a window's statistics need, read from PostgreSQL as columns (`vanta stats`).

Which events: every event up to `as_of` of each position with a close in (start, as_of], its
open and earlier closes included whenever they happened. Two scans with plain filters find them,
in one snapshot: (1) everything up to `as_of` of the positions opened inside the window, and
every close inside it; (2) the earlier events of the positions whose window close came from a
position opened before the window (they are known from (1) and fetched by their identity). A
semi-join over position keys did the same with two scans, a hash of every key, and a probe of
every row: twice the time.

How: `COPY ... (FORMAT binary)` of integer columns and the trader, one fixed-width row per
event that numpy reads in one call: nothing to format in PostgreSQL, nothing to parse here.
Event ids stay behind (two-thirds of the bytes); only events of one position at one moment,
which their ids order, fetch theirs afterwards. A read that does not fit that shape (a trader
that is not a 42-character address, a leverage of 1e8 or more) is done again as CSV with every
value in full, the exact reference.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from data.event_frames import LEDGER_SCHEMA
from data.events import CLOSING_KINDS, EventKind

if TYPE_CHECKING:
    import asyncpg

KINDS = [k.value for k in EventKind]
_KIND_SQL = "CASE t.kind " + " ".join(f"WHEN '{k}' THEN {i}" for i, k in enumerate(KINDS)) + " END"
_CLOSING_SQL = ", ".join(f"'{k.value}'" for k in sorted(CLOSING_KINDS))
_TRADER_BYTES = 42  # "0x" and 40 hex digits, as every source stores a trader
_EPOCH_2000 = 946_684_800  # PostgreSQL's binary timestamps count microseconds from 2000-01-01

# Small facts of each row packed in one int8, bit by bit (fewer fields: PostgreSQL formats and
# sends each field on its own). COPY BINARY rows must have no NULL to keep their width: nulls are
# flags here.
_PAIR_BITS, _INDEX_BITS, _KIND_BITS = 14, 17, 4  # pair index < 10,000, trade index < 100,000
_INDEX_AT, _KIND_AT = _PAIR_BITS, _PAIR_BITS + _INDEX_BITS
_FLAGS_AT = _KIND_AT + _KIND_BITS
_NO_COLLATERAL, _NO_LEVERAGE, _HUGE_LEVERAGE, _NO_PRICE, _PRICE_OK = 1, 2, 4, 8, 16
_NO_SIZE, _NO_SENT, _NO_SIDE, _LONG, _WIDE_INDEX = 32, 64, 128, 256, 512
_PACKED_SQL = f"""(
    CASE WHEN t.pair_index BETWEEN 0 AND {2**_PAIR_BITS - 1} AND t.trade_index BETWEEN 0 AND {2**_INDEX_BITS - 1}
         THEN t.pair_index::int8 | (t.trade_index::int8 << {_INDEX_AT}) ELSE 0 END
  | (({_KIND_SQL})::int8 << {_KIND_AT})
  | ((CASE WHEN t.collateral_usdc IS NULL THEN {_NO_COLLATERAL} ELSE 0 END
    + CASE WHEN t.leverage IS NULL THEN {_NO_LEVERAGE} WHEN t.leverage >= 100000000 THEN {_HUGE_LEVERAGE} ELSE 0 END
    + CASE WHEN t.price IS NULL THEN {_NO_PRICE} WHEN t.price > 0 THEN {_PRICE_OK} ELSE 0 END
    + CASE WHEN t.size_closed_usdc IS NULL THEN {_NO_SIZE} ELSE 0 END
    + CASE WHEN t.usdc_sent IS NULL THEN {_NO_SENT} ELSE 0 END
    + CASE WHEN t.side IS NULL THEN {_NO_SIDE} WHEN t.side = 'long' THEN {_LONG} ELSE 0 END
    + CASE WHEN t.pair_index BETWEEN 0 AND {2**_PAIR_BITS - 1} AND t.trade_index BETWEEN 0 AND {2**_INDEX_BITS - 1}
           THEN 0 ELSE {_WIDE_INDEX} END)::int8 << {_FLAGS_AT})
)"""
# (column, SQL, bytes in the row); every integer as int8. Closing and rollover fees stay behind:
# no realized close depends on them (usdcSent is already net of them).
_FIELDS: list[tuple[str, str, int]] = [
    ("event_key", "hashtextextended(t.event_id, 0)", 8),
    ("trader", "t.trader", _TRADER_BYTES),
    ("packed", _PACKED_SQL, 8),
    ("ts", "t.ts", 8),  # timestamptz: microseconds since 2000-01-01 UTC
    ("open_ts", "t.open_ts", 8),
    ("collateral_usdc", "coalesce(t.collateral_usdc, 0)", 8),
    (
        "leverage_e10",
        "CASE WHEN t.leverage < 100000000 THEN (t.leverage * 10000000000)::int8 ELSE 0 END",
        8,
    ),
    ("size_closed_usdc", "coalesce(t.size_closed_usdc, 0)", 8),
    ("open_fee_usdc", "t.open_fee_usdc", 8),
    ("usdc_sent", "coalesce(t.usdc_sent, 0)", 8),
]
_SELECT = "SELECT " + ", ".join(sql for _, sql, _ in _FIELDS) + " FROM trade_events t"
_ROW = np.dtype(
    [("count", ">i2")]
    + [
        item
        for name, _, width in _FIELDS
        for item in ((f"{name}_len", ">i4"), (name, f"S{width}" if name == "trader" else ">i8"))
    ]
)
_HEADER = b"PGCOPY\n\xff\r\n\x00"

# The exact reference: every value as text (one semi-join).
_TEXT_SELECT = """
SELECT t.event_id, t.trader, t.pair_index, t.trade_index::bigint, t.kind, t.side,
       floor(date_part('epoch', t.ts))::bigint AS ts, t.open_ts, t.collateral_usdc,
       CASE WHEN t.leverage >= 100000000 THEN t.leverage::text END AS leverage,
       CASE WHEN t.leverage < 100000000 THEN (t.leverage * 10000000000)::bigint END AS leverage_e10,
       (t.price > 0)::int AS price_ok, t.size_closed_usdc, t.open_fee_usdc, t.close_fee_usdc,
       t.rollover_fee_usdc, t.usdc_sent
FROM trade_events t
"""


async def _copy_out(conn: asyncpg.Connection, query: str, *args: object, fmt: str) -> bytearray:
    """A query's COPY output in memory, appended to one buffer as it arrives (no second copy to
    join pieces). An async sink: a file-like output makes asyncpg hand every 8 KB chunk to a
    thread, seconds of CPU for a few hundred MB."""
    payload = bytearray()

    async def keep(chunk: bytes) -> None:
        payload.extend(chunk)

    await conn.copy_from_query(query, *args, output=keep, format=fmt)
    return payload


def _fixed_rows(payload: bytearray) -> np.ndarray | None:
    """The rows of a `COPY ... (FORMAT binary)` of `_FIELDS`, or None when a row is not of the
    fixed shape (a NULL, a trader of another length)."""
    if not payload.startswith(_HEADER):
        raise ValueError("not PostgreSQL binary COPY output")
    extension = int.from_bytes(payload[15:19], "big")
    start, end = 19 + extension, len(payload) - 2  # rows, then the int16 -1 trailer
    if (end - start) % _ROW.itemsize:
        return None
    rows = np.frombuffer(payload, dtype=_ROW, offset=start, count=(end - start) // _ROW.itemsize)
    if len(rows) and not (rows["count"] == len(_FIELDS)).all():
        return None
    for name, _, width in _FIELDS:
        if len(rows) and not (rows[f"{name}_len"] == width).all():
            return None
    return rows


def _frame(rows: np.ndarray) -> pl.DataFrame:
    """`LEDGER_SCHEMA` columns (and `event_key`) from fixed rows; `event_id` left null."""
    raw = pl.DataFrame(
        {name: rows[name] if name == "trader" else rows[name].astype(np.int64) for name, _, _ in _FIELDS}
    )
    packed = pl.col("packed")

    def bits(at: int, width: int) -> pl.Expr:
        return (packed // 2**at) % 2**width

    def flag(bit: int) -> pl.Expr:
        return (packed // (bit << _FLAGS_AT)) % 2 == 1

    def unless(bit: int, value: pl.Expr) -> pl.Expr:
        return pl.when(~flag(bit)).then(value)

    return raw.select(
        event_id=pl.lit(None, pl.Utf8),
        event_key="event_key",
        trader=pl.col("trader").cast(pl.Utf8).cast(pl.Categorical),
        pair_index=bits(0, _PAIR_BITS).cast(pl.Int32),
        trade_index=bits(_INDEX_AT, _INDEX_BITS),
        kind=bits(_KIND_AT, _KIND_BITS).replace_strict(dict(enumerate(KINDS)), return_dtype=pl.Enum(KINDS)),
        side=unless(_NO_SIDE, pl.when(flag(_LONG)).then(pl.lit("long")).otherwise(pl.lit("short"))).cast(
            pl.Categorical
        ),
        ts=pl.col("ts") // 1_000_000 + _EPOCH_2000,
        open_ts="open_ts",
        collateral_usdc=unless(_NO_COLLATERAL, pl.col("collateral_usdc")),
        leverage=pl.lit(None, pl.Utf8),
        leverage_e10=unless(_NO_LEVERAGE, pl.col("leverage_e10")),
        price_ok=unless(_NO_PRICE, flag(_PRICE_OK)),
        size_closed_usdc=unless(_NO_SIZE, pl.col("size_closed_usdc")),
        open_fee_usdc="open_fee_usdc",
        close_fee_usdc=pl.lit(0, pl.Int64),
        rollover_fee_usdc=pl.lit(0, pl.Int64),
        usdc_sent=unless(_NO_SENT, pl.col("usdc_sent")),
    )


def _fits(rows: np.ndarray | None) -> bool:
    """Rows whose every value the binary shape carries exactly."""
    if rows is None:
        return False
    flags = rows["packed"].astype(np.int64) >> _FLAGS_AT
    return not (flags & (_HUGE_LEVERAGE | _WIDE_INDEX)).any()


async def _binary_read(conn: asyncpg.Connection, start: int, as_of: int) -> pl.DataFrame | None:
    """Both scans as fixed rows, or None when a row does not fit (then the text read is used)."""
    window_close = f"(t.ts > to_timestamp({start}) AND t.kind IN ({_CLOSING_SQL}))"
    first = await _copy_out(
        conn,
        f"{_SELECT} WHERE t.ts <= to_timestamp({as_of}) AND (t.open_ts > {start} OR {window_close})",
        fmt="binary",
    )
    rows = _fixed_rows(first)
    if rows is None or not _fits(rows):
        return None
    frame = _frame(rows)
    # Positions opened before the window that close inside it: their earlier events.
    older = (
        frame.filter((pl.col("open_ts") <= start) & (pl.col("ts") > start))
        .select(pl.col("trader").cast(pl.Utf8), "pair_index", "trade_index", "open_ts")
        .unique()
    )
    if older.height:
        second = await _copy_out(
            conn,
            f"""{_SELECT} WHERE t.open_ts <= {start} AND t.ts <= to_timestamp({as_of}) AND NOT {window_close}
                AND (t.trader, t.pair_index, t.trade_index, t.open_ts) IN (
                    SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::int8[]))""",
            *(older[c].to_list() for c in older.columns),
            fmt="binary",
        )
        more = _fixed_rows(second)
        if more is None or not _fits(more):
            return None
        frame = pl.concat([frame, _frame(more)], how="vertical_relaxed")
    return frame


async def with_event_ids(
    conn: asyncpg.Connection, events: pl.DataFrame, rows: pl.DataFrame
) -> pl.DataFrame | None:
    """`events` with the ids of `rows` filled in (events a ledger can only order by their ids;
    found by trader and time, told apart by their keys), or None when two of them share a key
    (then only the text read, which carries every id, can order them)."""
    found = await conn.fetch(
        """SELECT hashtextextended(event_id, 0) AS key, event_id FROM trade_events
           WHERE trader = ANY($1::text[]) AND ts = ANY($2::timestamptz[])
             AND hashtextextended(event_id, 0) = ANY($3::int8[])""",
        rows["trader"].cast(pl.Utf8).unique().to_list(),
        [datetime.fromtimestamp(s, UTC) for s in rows["ts"].unique().to_list()],
        rows["event_key"].to_list(),
    )
    ids: dict[int, str] = {}
    for r in found:
        if ids.setdefault(r["key"], r["event_id"]) != r["event_id"]:
            return None
    wanted = rows["event_key"].to_list()
    if len(set(wanted)) < len(wanted) or any(k not in ids for k in wanted):
        return None
    named = pl.col("event_key").is_in(pl.Series(wanted, dtype=pl.Int64).implode())
    return events.with_columns(
        event_id=pl.when(named)
        .then(pl.col("event_key").replace_strict(ids, default=None, return_dtype=pl.Utf8))
        .otherwise(pl.col("event_id"))
    )


async def _text_read(conn: asyncpg.Connection, start: int, as_of: int) -> pl.DataFrame:
    """Every event of the window's positions with every value as text: the exact reference."""
    query = f"""{_TEXT_SELECT}
        WHERE t.ts <= to_timestamp({as_of}) AND t.position_key IN (
            SELECT position_key FROM trade_events
            WHERE ts > to_timestamp({start}) AND ts <= to_timestamp({as_of}) AND kind IN ({_CLOSING_SQL}))"""
    payload = await _copy_out(conn, query, fmt="csv")
    if not payload:
        return pl.DataFrame(schema=LEDGER_SCHEMA)
    frame = pl.read_csv(
        bytes(payload),
        has_header=False,
        new_columns=list(LEDGER_SCHEMA),
        schema_overrides={"price_ok": pl.Int8},
    )
    return frame.select(
        pl.col(c).cast(pl.Boolean if c == "price_ok" else t) for c, t in LEDGER_SCHEMA.items()
    )


async def latest_activity(conn: asyncpg.Connection) -> tuple[int | None, int | None]:
    """(epoch seconds of the latest close, of the latest event); None when there is none."""
    row = await conn.fetchrow(
        f"""SELECT extract(epoch FROM max(ts) FILTER (WHERE kind IN ({_CLOSING_SQL})))::bigint AS close,
                   extract(epoch FROM max(ts))::bigint AS event FROM trade_events"""
    )
    return row["close"], row["event"]


async def load_window_events(
    conn: asyncpg.Connection, *, start: int, as_of: int, exact_ids: bool = False
) -> pl.DataFrame:
    """The events a ledger needs to realize every close in (start, as_of], as columns
    (`LEDGER_SCHEMA`, in no particular order): every event up to `as_of` of the positions that
    close in the window, and possibly events of positions opened in the window that close later
    (they realize nothing up to `as_of`). `event_id` is null and `event_key` its 64-bit hash,
    unless `exact_ids` asks for the text read (every id) or it was needed anyway; fill in the
    ids a ledger needs with `with_event_ids`. Call inside a transaction (one snapshot for both
    scans and any ids fetched later); `window_snapshot` opens one."""
    start, as_of = int(start), int(as_of)
    frame = None if exact_ids else await _binary_read(conn, start, as_of)
    if frame is None:
        frame = await _text_read(conn, start, as_of)
    return frame


@asynccontextmanager
async def window_snapshot(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """A read-only snapshot for `load_window_events` and `with_event_ids` (one REPEATABLE READ
    transaction), with the planner settings the reads want."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # The text read's hash of the window's positions spilled to disk with the default 4 MB;
        # without a price on passing rows between processes the planner scans on one core.
        await conn.execute("SET LOCAL work_mem = '256MB'; SET LOCAL parallel_tuple_cost = 0")
        yield
