"""DuckDB snapshots for research: PostgreSQL tables (or any frames) written as DuckDB tables.

Only DuckDB's built-in Arrow exchange is used (no extension downloads: machines here have no
internet).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl


def write_duckdb(path: Path, tables: dict[str, pl.DataFrame]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as con:
        for name, frame in tables.items():
            con.register("_frame", frame.to_arrow())
            con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM _frame')
            con.unregister("_frame")


def read_table(path: Path, name: str) -> pl.DataFrame:
    with duckdb.connect(str(path), read_only=True) as con:
        return pl.from_arrow(con.sql(f'SELECT * FROM "{name}"').to_arrow_table())  # type: ignore[return-value]


SNAPSHOT_TABLES = (
    "trade_events",
    "trader_positions",
    "trader_stats",
    "trader_analytics",
    "market_regime_data",
)


async def snapshot_postgres(
    pool, out: Path, tables: tuple[str, ...] = SNAPSHOT_TABLES, progress: Callable[[str], None] | None = None
) -> dict[str, int]:
    """Copy tables from PostgreSQL into a DuckDB file, replacing it atomically (write, then rename).

    Rows travel as Arrow-compatible columns; numerics stay exact (DuckDB DECIMAL(38, 10) for
    prices/leverage, BIGINT micro-USDC for money). `raw` JSON columns are dropped: the
    canonical columns carry everything research needs.
    """
    from decimal import Decimal

    counts: dict[str, int] = {}
    frames: dict[str, pl.DataFrame] = {}
    async with pool.acquire() as conn:
        for table in tables:
            cols = [
                r["column_name"]
                for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = $1 AND column_name <> 'raw' "
                    "ORDER BY ordinal_position",
                    table,
                )
            ]
            rows = await conn.fetch(f"SELECT {', '.join(cols)} FROM {table}")
            data = {c: [r[c] for r in rows] for c in cols}
            schema = {
                c: (pl.Decimal(38, 10) if any(isinstance(v, Decimal) for v in vals[:100]) else None)
                for c, vals in data.items()
            }
            frames[table] = (
                pl.DataFrame(
                    {
                        c: pl.Series(c, v, dtype=schema[c], strict=False) if schema[c] else pl.Series(c, v)
                        for c, v in data.items()
                    }
                )
                if rows
                else pl.DataFrame({c: [] for c in cols})
            )
            counts[table] = len(rows)
            if progress is not None:
                progress(table)
    tmp = out.with_suffix(".tmp.duckdb")
    tmp.unlink(missing_ok=True)
    write_duckdb(tmp, frames)
    tmp.replace(out)
    return counts
