"""DuckDB files for research: frames written as tables, read back as polars frames.

Only DuckDB's built-in Arrow exchange is used (no extension downloads: machines here have no
internet).
"""

from __future__ import annotations

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
