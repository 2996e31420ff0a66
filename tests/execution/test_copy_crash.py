"""Crash test: engines SIGKILLed at random points of a 200-follower fan-out, 20 times, with a
second engine beside them part of the time. Checked on the venue's own books: every
(follower, leader event) reached the paper venue exactly once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from data.events import EventKind
from execution.copy.engine import ACTIONS
from execution.copy.journal import intent_id
from infra.bus import StreamBus, connect
from tests.execution.copy_fixtures import add_followers, leader_event

pytestmark = pytest.mark.integration
VANTA = str(Path(sys.executable).parent / "vanta")
FOLLOWERS = 200
EVENTS = 20


def engine(env: dict[str, str], stream: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [
                VANTA,
                "execute",
                "--stream",
                stream,
                "--group",
                "crash",
                "--from-start",
                "--claim-idle-ms",
                "300",
                "--paper-latency-ms",
                "20",
                "--chunk",
                "40",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


async def test_sigkill_during_fanout_executes_each_copy_exactly_once(
    migrated_pool: asyncpg.Pool, empty_db_url: str, redis_server_url: str, stream_name: str, tmp_path: Path
) -> None:
    pool = migrated_pool
    profiles = await add_followers(pool, FOLLOWERS)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "VANTA_HOME": str(tmp_path / "home"),
        "DATABASE_URL": empty_db_url,
        "REDIS_URL": redis_server_url,
        "COPY_EXECUTION_MAX_DELAY_MS": "600000",
    }
    redis = connect(redis_server_url)
    bus = StreamBus(redis, stream_name)
    log = tmp_path / "engines.log"
    rng = random.Random(42)
    events = []
    for k in range(EVENTS):  # opens of positions 0, 2, 4, ... each closed by the next event
        if k % 2 == 0:
            ev = leader_event(EventKind.OPEN, n=k, trade_index=k)
        else:
            opened = events[-1]
            ev = leader_event(
                EventKind.CLOSE, n=k, trade_index=k - 1, open_ts=opened.open_ts, closed=opened.collateral_usdc
            )
        events.append(ev)

    async def started(n: int) -> None:
        async with asyncio.timeout(60):
            while log.read_text().count("copy engine consuming") < n:
                await asyncio.sleep(0.05)

    main = engine(env, stream_name, log)
    starts = 1
    second: subprocess.Popen[bytes] | None = None
    kills = 0
    cut_mid_fanout = 0
    try:
        for k, ev in enumerate(events):
            if k == 5:
                second = engine(env, stream_name, log)
                starts += 1
            if k == 13 and second is not None:
                second.send_signal(signal.SIGKILL)
                second.wait(10)
                kills += 1
                second = None
            await started(starts)
            await bus.publish(ev.to_record())
            await asyncio.sleep(rng.uniform(0.05, 0.45))
            main.send_signal(signal.SIGKILL)
            main.wait(10)
            kills += 1
            # Did the kill interrupt a fan-out (this event's or an earlier one being recovered)?
            unfinished = await pool.fetchval(
                "SELECT count(*) FROM copy_intents WHERE state IN ('planned', 'sent', 'unknown')"
            )
            cut_mid_fanout += unfinished > 0
            main = engine(env, stream_name, log)
            starts += 1
        expected_intents = FOLLOWERS * EVENTS
        async with asyncio.timeout(180):
            while True:
                done = await pool.fetchval(
                    "SELECT count(*) FROM copy_intents WHERE state NOT IN ('planned', 'sent', 'unknown')"
                )
                if done == expected_intents:
                    break
                assert main.poll() is None, log.read_text()[-3000:]
                await asyncio.sleep(0.2)
    finally:
        for proc in (main, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)
        await redis.delete(stream_name)
        await redis.aclose()

    assert kills == EVENTS + 1
    print(f"kills inside a fan-out: {cut_mid_fanout} of {kills}")
    assert cut_mid_fanout >= 10, f"only {cut_mid_fanout} kills landed inside a fan-out"
    expected = {intent_id(p, ev.event_id, ACTIONS[ev.kind]) for p in profiles for ev in events}
    orders = await pool.fetch("SELECT client_ref, count(*) AS n FROM paper_orders GROUP BY client_ref")
    duplicated = [r["client_ref"] for r in orders if r["n"] != 1]
    assert not duplicated, f"{len(duplicated)} copies reached the venue more than once"
    assert {r["client_ref"] for r in orders} == expected, "some copies never reached the venue"
    assert await pool.fetchval("SELECT count(*) FROM paper_orders WHERE status = 'filled'") == len(expected)
    assert await pool.fetchval("SELECT count(*) FROM paper_positions WHERE status = 'open'") == 0
    states = {r["state"] for r in await pool.fetch("SELECT DISTINCT state FROM copy_intents")}
    assert states <= {"filled", "resolved"}
    assert (
        await pool.fetchval("SELECT count(*) FROM copy_positions WHERE status = 'closed'")
        == FOLLOWERS * EVENTS // 2
    )
