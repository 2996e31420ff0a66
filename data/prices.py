"""Price history per pair for the market regime: Pyth samples (`market_prices`) and the chain's
own fills (`trade_events`), read back as one frame.

Fills are traders' executions at the oracle price plus the venue's spread, so they are a price
source of their own when no oracle feed is configured (the simulator, a replay); oracle samples
fill the gaps between trades. Prices become floats here: they are model inputs, not money.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import polars as pl

from data.pairs import Pair

PRICE_HISTORY_SCHEMA = {"pair": pl.Utf8, "ts": pl.Int64, "price": pl.Float64, "source": pl.Utf8}
# Events whose price is a traded price (a margin update or TP/SL change carries no execution).
_FILL_KINDS = ["open", "close", "partial_close", "tp", "sl", "liquidation"]


@dataclass(frozen=True)
class PriceSample:
    pair: str
    source: str
    ts: int  # unix seconds
    price: Decimal
    conf: Decimal | None = None


async def store_prices(conn: asyncpg.Connection, samples: Iterable[PriceSample]) -> int:
    """Insert samples not yet stored (same pair, source and time: kept once). Returns how many are new."""
    rows = [
        (s.pair, s.source, datetime.fromtimestamp(s.ts, UTC), s.price, s.conf)
        for s in {(s.pair, s.source, s.ts): s for s in samples}.values()
    ]
    if not rows:
        return 0
    inserted = await conn.fetch(
        "INSERT INTO market_prices (pair, source, ts, price, conf) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::numeric[], $5::numeric[]) "
        "ON CONFLICT DO NOTHING RETURNING 1",
        *map(list, zip(*rows, strict=True)),
    )
    return len(inserted)


async def price_history(
    conn: asyncpg.Connection,
    catalogue: Mapping[int, Pair],
    *,
    since: int,
    until: int,
    pairs: Iterable[str] | None = None,
    bucket_s: int = 1,
) -> pl.DataFrame:
    """Prices in (since, until], sorted by pair and time, from both sources; with `bucket_s`, only
    the last price of each source in each bucket of that many seconds (done in SQL: a month of a
    busy pair's fills is millions of rows, its 15-minute closes a few thousand).

    A fill's pair is named by the catalogue (its index); fills of pairs the catalogue does not
    know are left out rather than given a made-up name.
    """
    start, end = datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(until, UTC)
    wanted = sorted(set(pairs)) if pairs is not None else None
    index_of = {p.symbol: i for i, p in catalogue.items()}
    indexes = [index_of[s] for s in wanted if s in index_of] if wanted is not None else list(catalogue)
    fills = await conn.fetch(
        # Within a bucket the last fill in the ledger's order: time, opens before closes, event id.
        "SELECT DISTINCT ON (pair_index, epoch / $5) pair_index, epoch AS ts, price FROM ("
        "  SELECT pair_index, extract(epoch FROM ts)::bigint AS epoch, price::float8 AS price, event_id, kind"
        "  FROM trade_events WHERE ts > $1 AND ts <= $2 AND kind = ANY($3::text[]) AND price > 0"
        "  AND pair_index = ANY($4::int[])) f "
        "ORDER BY pair_index, epoch / $5, epoch DESC, (kind <> 'open') DESC, event_id DESC",
        start,
        end,
        _FILL_KINDS,
        indexes,
        bucket_s,
    )
    oracle = await conn.fetch(
        "SELECT DISTINCT ON (pair, source, epoch / $4) pair, source, epoch AS ts, price FROM ("
        "  SELECT pair, source, extract(epoch FROM ts)::bigint AS epoch, price::float8 AS price"
        "  FROM market_prices WHERE ts > $1 AND ts <= $2 AND ($3::text[] IS NULL OR pair = ANY($3::text[]))) m "
        "ORDER BY pair, source, epoch / $4, epoch DESC",
        start,
        end,
        wanted,
        bucket_s,
    )
    rows = [(catalogue[r["pair_index"]].symbol, r["ts"], r["price"], "fill") for r in fills]
    rows += [(r["pair"], r["ts"], r["price"], r["source"]) for r in oracle]
    return pl.DataFrame(rows, schema=PRICE_HISTORY_SCHEMA, orient="row").sort("pair", "ts", "source")


async def price_version(conn: asyncpg.Connection) -> str:
    """Changes whenever a newer price arrives from either source."""
    row = await conn.fetchrow(
        "SELECT (SELECT max(ts) FROM trade_events) AS fill, (SELECT max(ts) FROM market_prices) AS oracle"
    )
    assert row is not None
    return f"{row['fill']}|{row['oracle']}"
