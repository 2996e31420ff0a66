"""Snapshots from a real PostgreSQL into DuckDB keep money and prices exact."""

from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from data.events import EventKind, Side, TradeEvent
from data.snapshots import read_table, snapshot_postgres
from data.store import insert_events, load_events

pytestmark = pytest.mark.integration


async def test_events_round_trip_postgres_to_duckdb_exactly(
    migrated_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    events = [
        TradeEvent(
            event_id=f"e{i}",
            venue="avantis",
            source="test",
            trader="0xAbC",
            pair_index=1,
            kind=EventKind.OPEN,
            trade_index=i,
            open_ts=1_700_000_000 + i,
            ts=1_700_000_000 + i,
            side=Side.SHORT,
            collateral_usdc=123_456_789 + i,
            leverage=Decimal("12.5"),
            price=Decimal("0.0000123456"),
            open_fee_usdc=7,
        )
        for i in range(5)
    ]
    async with migrated_pool.acquire() as conn:
        assert len(await insert_events(conn, events + events[:2])) == 5
        assert await insert_events(conn, events) == []
        loaded = await load_events(conn)
    assert [e.event_id for e in loaded] == [f"e{i}" for i in range(5)]
    assert loaded[0].trader == "0xabc" and loaded[0].price == Decimal("0.0000123456")

    out = tmp_path / "snap.duckdb"
    counts = await snapshot_postgres(migrated_pool, out)
    assert counts["trade_events"] == 5 and counts["trader_stats"] == 0
    frame = read_table(out, "trade_events").sort("event_id")
    assert frame["collateral_usdc"].to_list() == [123_456_789 + i for i in range(5)]
    assert frame["price"].to_list()[0] == Decimal("0.0000123456")
    assert "raw" not in frame.columns
    # A second snapshot replaces the file whole.
    await migrated_pool.execute("DELETE FROM trade_events WHERE event_id = 'e0'")
    assert (await snapshot_postgres(migrated_pool, out))["trade_events"] == 4
    assert read_table(out, "trade_events").height == 4
