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
) -> pl.DataFrame:
    """Prices in (since, until], sorted by pair and time, from both sources.

    A fill's pair is named by the catalogue (its index); fills of pairs the catalogue does not
    know are left out rather than given a made-up name.
    """
    start, end = datetime.fromtimestamp(since, UTC), datetime.fromtimestamp(until, UTC)
    wanted = sorted(set(pairs)) if pairs is not None else None
    index_of = {p.symbol: i for i, p in catalogue.items()}
    indexes = [index_of[s] for s in wanted if s in index_of] if wanted is not None else list(catalogue)
    fills = await conn.fetch(
        "SELECT pair_index, extract(epoch FROM ts)::bigint AS ts, price::float8 AS price FROM trade_events "
        "WHERE ts > $1 AND ts <= $2 AND kind = ANY($3::text[]) AND price > 0 AND pair_index = ANY($4::int[])",
        start,
        end,
        _FILL_KINDS,
        indexes,
    )
    oracle = await conn.fetch(
        "SELECT pair, source, extract(epoch FROM ts)::bigint AS ts, price::float8 AS price FROM market_prices "
        "WHERE ts > $1 AND ts <= $2 AND ($3::text[] IS NULL OR pair = ANY($3::text[]))",
        start,
        end,
        wanted,
    )
    rows = [(catalogue[r["pair_index"]].symbol, r["ts"], r["price"], "fill") for r in fills]
    rows += [(r["pair"], r["ts"], r["price"], r["source"]) for r in oracle]
    return pl.DataFrame(rows, schema=PRICE_HISTORY_SCHEMA, orient="row").sort("pair", "ts")
