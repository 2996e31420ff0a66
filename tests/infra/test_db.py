"""Migrations against a real PostgreSQL (embedded unless DATABASE_URL is set)."""

import asyncpg
import pytest

from infra import db

pytestmark = pytest.mark.integration

TABLES = {
    "trade_events",
    "trader_stats",
    "copytrader_profiles",
    "copy_configurations",
    "leader_follows",
    "copy_positions",
    "trader_analytics",
    "market_regime_data",
    "market_prices",
    "copy_performance_attribution",
    "ai_model_metadata",
    "indexer_checkpoints",
    "copy_intents",
    "notifications",
    "users",
    "audit_log",
}
VIEWS = {"top_traders_view", "active_copytraders_view", "copy_performance_summary", "latest_trader_analytics"}


async def test_migrate_from_empty_then_rerun_is_a_noop(empty_db_url: str) -> None:
    conn = await asyncpg.connect(empty_db_url)
    try:
        first = await db.migrate(conn)
        assert first == [m.version for m in db.load_migrations()]
        assert await db.migrate(conn) == []
        status = await db.status(conn)
        assert status["migrations_applied"] == len(first)
        assert TABLES <= set(status["tables"])
        assert VIEWS == set(status["views"])
    finally:
        await conn.close()


async def test_money_columns_are_never_floating_point(empty_db_url: str) -> None:
    conn = await asyncpg.connect(empty_db_url)
    try:
        await db.migrate(conn)
        rows = await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND (column_name LIKE '%usdc%' OR column_name LIKE '%price%')"
        )
        assert rows, "expected money columns"
        floats = [
            (r["table_name"], r["column_name"])
            for r in rows
            if r["data_type"] in ("real", "double precision")
        ]
        assert floats == []
    finally:
        await conn.close()


async def test_chain_events_are_unique_per_log(migrated_pool: asyncpg.Pool) -> None:
    insert = (
        "INSERT INTO trade_events (event_id, venue, source, chain_id, tx_hash, log_index, trader, pair_index,"
        " kind, position_key, trade_index, open_ts, ts) VALUES ($1,'avantis','chain',8453,'0xaa',3,'0x1',0,"
        " 'open','k',0,0,now())"
    )
    await migrated_pool.execute(insert, "a")
    with pytest.raises(asyncpg.UniqueViolationError):
        await migrated_pool.execute(insert, "b")


async def test_edited_migration_is_refused(empty_db_url: str, tmp_path) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x int);")
    conn = await asyncpg.connect(empty_db_url)
    try:
        assert await db.migrate(conn, tmp_path) == [1]
        (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x bigint);")
        with pytest.raises(db.MigrationError, match="edited"):
            await db.migrate(conn, tmp_path)
    finally:
        await conn.close()


async def test_failed_migration_rolls_back_whole(empty_db_url: str, tmp_path) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "0002_b.sql").write_text("CREATE TABLE b (x int); SELECT no_such_function();")
    conn = await asyncpg.connect(empty_db_url)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await db.migrate(conn, tmp_path)
        assert await conn.fetchval("SELECT to_regclass('public.b')") is None
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == 1
    finally:
        await conn.close()


def test_migration_files_are_numbered_without_gaps(tmp_path) -> None:
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0003_c.sql").write_text("")
    with pytest.raises(db.MigrationError, match="gaps"):
        db.load_migrations(tmp_path)
