"""`vanta track` rides out a Redis restart (SIGKILL, same data) and a PostgreSQL restart (crash
stop, 3 s down) mid-stream: every position of the real closed trades ends up in
`trader_positions` with the ledger's realized PnL, and SIGTERM still stops it within 5 s."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from data.sources.veranta_history.ingest import events_for
from data.sources.veranta_history.records import load_file, parse_trade
from infra.bus import StreamBus, connect
from infra.reconnect import with_reconnect
from research.ledger import PositionLedger
from tests.conftest import shared_data_or_skip
from tests.servers import RestartablePostgres, RestartableRedis

pytestmark = pytest.mark.integration
VANTA = str(Path(sys.executable).parent / "vanta")


async def position_rows(url: str) -> dict[str, tuple[int, str]]:
    """position key -> (realized PnL, status); empty while the database is down or unmigrated."""
    try:
        conn = await asyncpg.connect(url, timeout=2)
    except (OSError, asyncpg.PostgresError):
        return {}
    try:
        if not await conn.fetchval("SELECT to_regclass('public.trader_positions') IS NOT NULL"):
            return {}
        rows = await conn.fetch("SELECT position_key, realized_pnl_usdc, status FROM trader_positions")
        return {r["position_key"]: (r["realized_pnl_usdc"], r["status"]) for r in rows}
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return {}
    finally:
        await conn.close()


async def wait_for_rows(url: str, expected: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait on progress: fail only if the tracker died or wrote nothing new for 60 s."""
    seen, last_progress = -1, time.monotonic()
    while (n := len(await position_rows(url))) < expected:
        assert proc.poll() is None, log.read_text()[-3000:]
        if n > seen:
            seen, last_progress = n, time.monotonic()
        assert time.monotonic() - last_progress < 60, f"stuck at {n} of {expected}: {log.read_text()[-3000:]}"
        await asyncio.sleep(0.2)


async def test_tracker_survives_redis_and_postgres_restarts(tmp_path: Path) -> None:
    folder = shared_data_or_skip("avantis", "trades")
    events = []
    for path in sorted(folder.glob("*.json")):
        trader, records = load_file(path)
        events += events_for([parse_trade(trader, r) for r in records])
    events.sort(key=lambda e: (e.ts, e.kind != "open", e.event_id))
    ledger = PositionLedger()
    ledger.apply_all(events)
    expected = {
        k: (p.realized_pnl_usdc, "open" if p.is_open else ("liquidated" if p.liquidated else "closed"))
        for k, p in ledger.positions.items()
    }
    thirds = [events[: len(events) // 3], events[len(events) // 3 : 2 * len(events) // 3]]
    thirds.append(events[2 * len(events) // 3 :])
    keys_after = [len({e.position_key for e in events[: sum(map(len, thirds[: i + 1]))]}) for i in range(3)]

    with RestartablePostgres(tmp_path) as pg, RestartableRedis(tmp_path) as rds:
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
            "VANTA_HOME": str(tmp_path / "home"),
            "DATABASE_URL": pg.url,
            "REDIS_URL": rds.url,
            "METRICS_PORT": "0",
        }
        log = tmp_path / "track.log"
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                [VANTA, "track", "--window-days", "365"],
                env=env,
                stdout=sink,
                stderr=sink,
                start_new_session=True,
            )
        bus = StreamBus(connect(rds.url))

        async def publish(batch: list) -> None:  # type: ignore[type-arg]
            await with_reconnect(
                lambda: bus.publish_many([e.to_record() for e in batch]), what="test publisher"
            )

        try:
            await publish(thirds[0])
            await wait_for_rows(pg.url, keys_after[0], proc, log)

            rds.kill()  # Redis dies under the tracker's blocking read, and comes back with its data
            await asyncio.sleep(1)
            rds.start()
            await publish(thirds[1])
            await wait_for_rows(pg.url, keys_after[1], proc, log)

            pg.stop()  # the database goes away while events keep arriving
            await publish(thirds[2])
            await asyncio.sleep(3)
            pg.start()
            await wait_for_rows(pg.url, keys_after[2], proc, log)
            # Rows appear per flush: wait until the last flush has landed every close too.
            deadline = time.monotonic() + 60
            while (got := await position_rows(pg.url)) != expected and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert got == expected
            assert proc.poll() is None, log.read_text()[-3000:]
            text = log.read_text()
            assert text.count("server unreachable; retrying with backoff") >= 2, text[-3000:]
            assert text.count("server reachable again; carrying on") >= 2

            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 10)
            took = time.monotonic() - sent
            print(
                f"tracker: {len(got)} positions of {len(expected)}, 2 restarts, stopped {took:.2f} s after SIGTERM"
            )
            assert code == 0 and took < 5
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            await bus.redis.aclose()
