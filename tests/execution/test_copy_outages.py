"""The engine under ordinary operations: Redis killed and started again, PostgreSQL stopped for
eight seconds and started again, each mid-run — every copy made exactly once, none left open, the
engine never exits; and `vanta execute` and `vanta reconcile` stop within 5 s of SIGTERM or
SIGINT while they retry an unreachable node.

Seen before the fix: the engine exited when Redis went away; after PostgreSQL came back it stayed
alive but copied nothing (160 intents left `planned`, "connection has been released back to the
pool" on the connection that held its advisory locks)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

from infra import db
from infra.bus import StreamBus, connect
from tests.execution.copy_fixtures import add_followers
from tests.execution.engines import (
    VANTA,
    Engines,
    copy_figures,
    engine_env,
    final_intents,
    position_events,
    until,
    until_progress_done,
)
from tests.execution.onchain_fixtures import DELEGATE_KEY
from tests.execution.restartable import RestartablePostgres, RestartableRedis
from tests.servers import free_port

pytestmark = pytest.mark.integration
T = TypeVar("T")


async def test_the_engine_rides_out_a_redis_restart(
    migrated_pool: asyncpg.Pool, empty_db_url: str, stream_name: str, tmp_path: Path
) -> None:
    pool = migrated_pool
    profiles = await add_followers(pool, 20)
    positions = position_events(6, partial=True)
    events = [ev for evs in positions for ev in evs]
    with RestartableRedis(tmp_path / "redis") as server:
        env = engine_env(empty_db_url, server.url, tmp_path / "home")
        with Engines(env, tmp_path / "engine.log", stream_name, "--claim-idle-ms", "1000") as procs:
            procs.start()
            await procs.until_consuming()
            redis = connect(server.url)
            await StreamBus(redis, stream_name).publish_many([ev.to_record() for ev in events[:9]])
            await redis.aclose()
            await until(lambda: _gt(final_intents(pool), 20), "copies before the restart")
            server.kill()
            await until(lambda: _true(procs.logged("event stream unavailable") > 0), "the engine noticing")
            await asyncio.sleep(1)
            server.start()
            redis = connect(server.url)
            await StreamBus(redis, stream_name).publish_many([ev.to_record() for ev in events[9:]])
            await redis.aclose()

            def alive() -> None:
                assert len(procs.alive()) == 1, procs.tail()

            await until_progress_done(lambda: final_intents(pool), 20 * len(events), "copies", check=alive)
            assert procs.logged("copy engine rejoined the stream") == 0  # the group survived (AOF)
    figures = await copy_figures(pool, profiles, events)
    print("redis restart:", figures)
    assert (figures["duplicates"], figures["missing"], figures["left_open"], figures["venue_open"]) == (
        0,
        0,
        0,
        0,
    )


async def _gt(count: Awaitable[int], n: int) -> bool:
    return await count > n


async def _true(value: bool) -> bool:
    return value


async def _fresh(url: str, work: Callable[[asyncpg.Connection], Awaitable[T]], default: T) -> T:
    """Ask on a new connection; while the server is down, `default`."""
    try:
        conn = await asyncpg.connect(url, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return default
    try:
        return await work(conn)
    finally:
        await conn.close()


async def test_the_engine_rides_out_a_postgres_restart(
    redis_server_url: str, stream_name: str, tmp_path: Path
) -> None:
    with RestartablePostgres(tmp_path / "pg") as server:
        url = server.url
        pool = await db.create_pool(url)
        async with pool.acquire() as conn:
            await db.migrate(conn)
        profiles = await add_followers(pool, 40)
        await pool.close()
        positions = position_events(4, partial=True)
        events = [ev for evs in positions for ev in evs]
        expected = 40 * len(events)
        env = engine_env(url, redis_server_url, tmp_path / "home")
        args = ("--claim-idle-ms", "1000", "--paper-latency-ms", "100", "--chunk", "10")
        last = 0

        async def settled() -> int:
            nonlocal last
            last = await _fresh(
                url, lambda c: c.fetchval(f"SELECT count(*) FROM copy_intents WHERE {FINAL}"), last
            )
            return last

        with Engines(env, tmp_path / "engine.log", stream_name, *args) as procs:
            procs.start()
            await procs.until_consuming()
            redis = connect(redis_server_url)
            bus = StreamBus(redis, stream_name)
            await bus.publish_many([ev.to_record() for ev in events[:6]])
            await until(lambda: _gt(settled(), 30), "copies before the outage")
            assert await settled() < 40 * 6, "the outage must land mid-run"
            server.stop()
            outage = time.monotonic()
            await bus.publish_many([ev.to_record() for ev in events[6:]])  # arrive while it is down
            await asyncio.sleep(max(0.0, 8 - (time.monotonic() - outage)))
            server.start()
            await redis.aclose()

            def alive() -> None:
                assert len(procs.alive()) == 1, procs.tail()

            await until_progress_done(settled, expected, "copies after the restart", check=alive)
        pool = await db.create_pool(url)
        try:
            figures = await copy_figures(pool, profiles, events)
        finally:
            await pool.close()
        print("postgres restart:", figures)
        assert (figures["duplicates"], figures["missing"], figures["left_open"], figures["venue_open"]) == (
            0,
            0,
            0,
            0,
        )


FINAL = "state NOT IN ('planned', 'sent', 'unknown')"


def unreachable_node() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there: every call is refused, retried


async def stops_within(procs: Engines, proc: object, sig: signal.Signals) -> float:
    import subprocess

    assert isinstance(proc, subprocess.Popen)
    await until(
        lambda: _true(procs.logged("rpc call failed, retrying") > 0), "a retry under way", stall_s=120
    )
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        await asyncio.to_thread(proc.wait, 30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 30 s after {sig.name}")
    return time.monotonic() - sent


def onchain_env(db_url: str, redis_url: str, home: Path) -> dict[str, str]:
    return engine_env(
        db_url,
        redis_url,
        home,
        BASE_RPC_URL=unreachable_node(),
        COPY_DELEGATE_KEY=DELEGATE_KEY,
        CHAIN_ID="31337",
    )


async def retrying_execute(procs: Engines, redis_url: str, stream: str) -> object:
    """`vanta execute --venue onchain` with an open to copy and no node: it retries forever."""
    from data.events import EventKind
    from tests.execution.copy_fixtures import leader_event

    proc = procs.start()
    await procs.until_consuming()
    redis = connect(redis_url)
    await StreamBus(redis, stream).publish(leader_event(EventKind.OPEN).to_record())
    await redis.aclose()
    return proc


async def test_execute_and_reconcile_stop_within_5s_mid_retry(
    migrated_pool: asyncpg.Pool, empty_db_url: str, redis_server_url: str, stream_name: str, tmp_path: Path
) -> None:
    """Side by side (one start-up wait for both): execute gets SIGTERM, reconcile SIGINT. The
    reconciled profile follows no one: a profile with a copy in flight is skipped for the round."""
    from execution.copy.profiles import ensure_profile

    await add_followers(migrated_pool, 1, wallets=["0x" + "11" * 20])
    async with migrated_pool.acquire() as conn:
        await ensure_profile(
            conn,
            telegram_user_id=99,
            name="idle",
            venue="onchain",
            equity_usdc=10**9,
            wallet_address="0x" + "22" * 20,
        )
    env = onchain_env(empty_db_url, redis_server_url, tmp_path / "home")
    with (
        Engines(env, tmp_path / "engine.log", stream_name, "--venue", "onchain") as engines,
        Engines(env, tmp_path / "reconcile.log", "unused") as reconciles,
    ):
        reconcile = reconciles.spawn(VANTA, "reconcile", "--venue", "onchain")
        execute = await retrying_execute(engines, redis_server_url, stream_name)
        took = await asyncio.gather(
            stops_within(engines, execute, signal.SIGTERM), stops_within(reconciles, reconcile, signal.SIGINT)
        )
    print(f"execute stopped {took[0]:.2f} s after SIGTERM, reconcile {took[1]:.2f} s after SIGINT")
    assert max(took) < 5


@pytest.mark.soak
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_soak_execute_stops_within_5s_mid_retry(
    migrated_pool: asyncpg.Pool,
    empty_db_url: str,
    redis_server_url: str,
    stream_name: str,
    tmp_path: Path,
    sig,
) -> None:
    await add_followers(migrated_pool, 1, wallets=["0x" + "11" * 20])
    env = onchain_env(empty_db_url, redis_server_url, tmp_path / "home")
    with Engines(env, tmp_path / "engine.log", stream_name, "--venue", "onchain") as procs:
        proc = await retrying_execute(procs, redis_server_url, stream_name)
        took = await stops_within(procs, proc, sig)
    print(f"execute stopped {took:.2f} s after {sig.name}")
    assert took < 5


@pytest.mark.soak
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_soak_reconcile_stops_within_5s_mid_retry(
    migrated_pool: asyncpg.Pool, empty_db_url: str, redis_server_url: str, tmp_path: Path, sig
) -> None:
    await add_followers(migrated_pool, 1, wallets=["0x" + "22" * 20])
    env = onchain_env(empty_db_url, redis_server_url, tmp_path / "home")
    with Engines(env, tmp_path / "reconcile.log", "unused") as procs:
        proc = procs.spawn(VANTA, "reconcile", "--venue", "onchain")
        took = await stops_within(procs, proc, sig)
    print(f"reconcile stopped {took:.2f} s after {sig.name}")
    assert took < 5
