"""Crash tests: engines SIGKILLed at random points of a 200-follower fan-out, 20 times, with a
second engine beside them part of the time. Checked on the venue's side: every (follower, leader
event) reached the paper venue's books exactly once, and on anvil the contracts hold exactly one
order per (follower, event)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import asyncpg
import eth_abi
import pytest
from eth_utils import keccak

from data.events import EventKind, TradeEvent
from data.protocol.abi import TRADE_TYPE
from execution.copy.engine import ACTIONS
from execution.copy.journal import intent_id
from infra.bus import StreamBus, connect
from tests.execution.copy_fixtures import add_followers, leader_event
from tests.execution.onchain_fixtures import CHAIN_ID, DELEGATE_KEY, E10, LocalVenueChain, local_venue_chain

pytestmark = pytest.mark.integration
VANTA = str(Path(sys.executable).parent / "vanta")
FOLLOWERS = 200


def open_close_events(n: int) -> list[TradeEvent]:
    """Opens of positions 0, 2, 4, ... each closed by the next event; every event at its own price."""
    events: list[TradeEvent] = []
    for k in range(n):
        price = str(60_000 + 10 * k)
        if k % 2 == 0:
            ev = leader_event(EventKind.OPEN, n=k, trade_index=k, price=price)
        else:
            opened = events[-1]
            ev = leader_event(
                EventKind.CLOSE,
                n=k,
                trade_index=k - 1,
                open_ts=opened.open_ts,
                closed=opened.collateral_usdc,
                price=price,
            )
        events.append(ev)
    return events


@dataclass
class CrashRun:
    kills: int = 0
    cut_mid_fanout: int = 0


async def crash_engines(
    pool: asyncpg.Pool,
    env: dict[str, str],
    stream: str,
    log: Path,
    events: list[TradeEvent],
    engine_args: list[str],
    *,
    expected_intents: int,
    kills_per_event: int = 1,
    kill_window_s: tuple[float, float] = (0.05, 0.45),
    before_publish: Callable[[TradeEvent], None] | None = None,
) -> CrashRun:
    """Publish each event, SIGKILL the engine at a random moment of its fan-out, restart it; a
    second engine runs beside it from a quarter to two thirds of the events, then is killed too.
    Returns when every intent is final."""

    def engine() -> subprocess.Popen[bytes]:
        args = [VANTA, "execute", "--stream", stream, "--group", "crash", "--from-start"]
        args += ["--claim-idle-ms", "300", "--chunk", "40", *engine_args]
        with log.open("ab") as sink:
            return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=sink)

    async def started(n: int) -> None:
        async with asyncio.timeout(60):
            while log.read_text().count("copy engine consuming") < n:
                await asyncio.sleep(0.05)

    redis = connect(env["REDIS_URL"])
    bus = StreamBus(redis, stream)
    rng = random.Random(42)
    run = CrashRun()
    main = engine()
    starts = 1
    second: subprocess.Popen[bytes] | None = None
    second_from, second_to = len(events) // 4, 2 * len(events) // 3
    try:
        for k, ev in enumerate(events):
            if k == second_from:
                second = engine()
                starts += 1
            if k == second_to and second is not None:
                second.send_signal(signal.SIGKILL)
                second.wait(10)
                run.kills += 1
                second = None
            if before_publish is not None:
                before_publish(ev)
            await started(starts)
            await bus.publish(ev.to_record())
            for _ in range(kills_per_event):
                await asyncio.sleep(rng.uniform(*kill_window_s))
                main.send_signal(signal.SIGKILL)
                main.wait(10)
                run.kills += 1
                # Did the kill interrupt a fan-out (this event's or an earlier one being recovered)?
                unfinished = await pool.fetchval(
                    "SELECT count(*) FROM copy_intents WHERE state IN ('planned', 'sent', 'unknown')"
                )
                run.cut_mid_fanout += unfinished > 0
                main = engine()
                starts += 1
                await started(starts)
        async with asyncio.timeout(300):
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
        await redis.delete(stream)
        await redis.aclose()
    outcomes = await pool.fetch(
        "SELECT action, state, refusal_reason, error, count(*) AS n FROM copy_intents GROUP BY 1, 2, 3, 4 ORDER BY 1, 2"
    )
    print(f"kills: {run.kills}, inside a fan-out: {run.cut_mid_fanout}, outcomes:")
    print([tuple(r.values()) for r in outcomes])
    return run


def engine_env(empty_db_url: str, redis_url: str, home: Path, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "VANTA_HOME": str(home),
        "DATABASE_URL": empty_db_url,
        "REDIS_URL": redis_url,
        "COPY_EXECUTION_MAX_DELAY_MS": "600000",
        **extra,
    }


async def test_sigkill_during_fanout_executes_each_copy_exactly_once(
    migrated_pool: asyncpg.Pool, empty_db_url: str, redis_server_url: str, stream_name: str, tmp_path: Path
) -> None:
    pool = migrated_pool
    profiles = await add_followers(pool, FOLLOWERS)
    events = open_close_events(20)
    env = engine_env(empty_db_url, redis_server_url, tmp_path / "home")
    run = await crash_engines(
        pool,
        env,
        stream_name,
        tmp_path / "engines.log",
        events,
        ["--paper-latency-ms", "20"],
        expected_intents=FOLLOWERS * len(events),
    )
    assert run.kills == len(events) + 1
    assert run.cut_mid_fanout >= 10, f"only {run.cut_mid_fanout} kills landed inside a fan-out"
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
        == FOLLOWERS * len(events) // 2
    )


async def test_sigkill_during_onchain_fanout_leaves_one_order_per_copy_on_the_contracts(
    migrated_pool: asyncpg.Pool, empty_db_url: str, redis_server_url: str, stream_name: str, tmp_path: Path
) -> None:
    """The same crashes against anvil. The check reads the chain, not our tables: every
    transaction the delegate ever sent (its nonce says how many) is decoded from the node, and
    each (follower, open event) appears exactly once — every open carries its event's price as
    the expected price — with as many closes as close events and nothing left open."""
    pool = migrated_pool
    with local_venue_chain() as local:
        wallets = local.add_followers(FOLLOWERS)
        profiles = await add_followers(pool, FOLLOWERS, wallets=wallets)
        events = open_close_events(10)  # opened after the follows began
        env = engine_env(
            empty_db_url,
            redis_server_url,
            tmp_path / "home",
            BASE_RPC_URL=local.node.http_url,
            CHAIN_ID=str(CHAIN_ID),
            AVANTIS_TRADING_ADDRESS=local.chain.trading.address,
            COPY_DELEGATE_KEY=DELEGATE_KEY,
            COPY_FILL_TIMEOUT_S="20",
        )

        def keeper_price(ev: TradeEvent) -> None:
            assert ev.price is not None
            local.prices[ev.pair_index] = int(ev.price * E10)

        with local.keeper(wallets) as keeper:
            run = await crash_engines(
                pool,
                env,
                stream_name,
                tmp_path / "engines.log",
                events,
                ["--venue", "onchain"],
                expected_intents=FOLLOWERS * len(events),
                kills_per_event=2,
                kill_window_s=(0.1, 1.5),
                before_publish=keeper_price,
            )
        assert keeper.errors == []
        assert run.kills == 2 * len(events) + 1
        assert run.cut_mid_fanout >= 10, f"only {run.cut_mid_fanout} kills landed inside a fan-out"
        calls = delegate_calls(local)
        states = await pool.fetch("SELECT state, count(*) AS n FROM copy_intents GROUP BY state")
        open_counts = {w: local.chain.trading.functions.openCount(w, 1).call() for w in wallets}
    opens = Counter((follower, price) for follower, name, price in calls if name == "openTrade")
    closes = Counter(follower for follower, name, _ in calls if name == "closeTradeMarket")
    open_prices = {int(Decimal(ev.price) * E10) for ev in events if ev.kind is EventKind.OPEN}  # type: ignore[arg-type]
    assert set(opens.values()) == {1}, "an open reached the chain twice"
    assert set(opens) == {(w.lower(), p) for w in wallets for p in open_prices}, (
        "an open never reached the chain"
    )
    assert closes == Counter({w.lower(): len(open_prices) for w in wallets})
    assert set(open_counts.values()) == {0}
    assert {r["state"] for r in states} <= {"filled", "resolved"}, states
    assert sum(r["n"] for r in states) == len(profiles) * len(events)


def delegate_calls(local: LocalVenueChain) -> list[tuple[str, str, int]]:
    """Every transaction the delegate sent, read from the node block by block: (follower, function
    run for them, the open's expected price or 0), each mined successfully."""
    w3 = local.chain.w3
    sent = w3.eth.get_transaction_count(local.delegate)
    selectors = {
        keccak(text=f"openTrade({TRADE_TYPE},uint8,uint256)")[:4]: "openTrade",
        keccak(text="closeTradeMarket(uint256,uint256,uint256)")[:4]: "closeTradeMarket",
    }
    out: list[tuple[str, str, int]] = []
    head = w3.eth.block_number
    for number in range(head + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["from"] != local.delegate:
                continue
            assert w3.eth.get_transaction_receipt(tx["hash"])["status"] == 1
            data = bytes(tx["input"])
            follower, inner = eth_abi.decode(["address", "bytes"], data[4:])
            name = selectors[inner[:4]]
            price = 0
            if name == "openTrade":
                trade, _, _ = eth_abi.decode([TRADE_TYPE, "uint8", "uint256"], inner[4:])
                price = trade[5]
            out.append((follower.lower(), name, price))
    assert len(out) == sent, f"{sent} delegate transactions by nonce, {len(out)} found in blocks"
    return out
