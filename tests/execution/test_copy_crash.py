"""Crash tests: two engines share the stream while one or the other is SIGKILLed at random moments
of its fan-outs and started again; leader positions are opened, partly closed and closed, some
published newest first. Checked on the venue's own side: every copy reached the venue's books
exactly once, none is missing, none is left open.

`make test` runs a light variant (100 followers); `make soak` the heavy ones: 150 followers and a
kill after every event on the paper venue, and the same crashes against anvil, where the check
reads the delegate's transactions back from the node. Every wait is on progress, and every
process a test starts is killed with its process group when the test ends, however it ends.
"""

from __future__ import annotations

import asyncio
import random
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
from infra.bus import StreamBus, connect
from tests.execution.copy_fixtures import add_followers
from tests.execution.engines import (
    FINAL,
    Engines,
    copy_figures,
    engine_env,
    final_intents,
    position_events,
    until,
    until_progress_done,
)
from tests.execution.onchain_fixtures import CHAIN_ID, DELEGATE_KEY, E10, LocalVenueChain, local_venue_chain

pytestmark = pytest.mark.integration


@dataclass
class CrashRun:
    kills: int = 0
    cut_mid_fanout: int = 0


async def _some(flags: object) -> bool:
    return any(flags)  # type: ignore[call-overload]


def interleaved(positions: list[list[TradeEvent]], newest_first_every: int = 0) -> list[TradeEvent]:
    """Positions one after another; every `newest_first_every`-th one published close first (as a
    history file lists trades), to show the engine does not need its sources in order."""
    out: list[TradeEvent] = []
    for k, events in enumerate(positions):
        reverse = newest_first_every and k % newest_first_every == newest_first_every - 1
        out += list(reversed(events)) if reverse else events
    return out


async def crash_run(
    pool: asyncpg.Pool,
    env: dict[str, str],
    stream: str,
    log: Path,
    events: list[TradeEvent],
    engine_args: list[str],
    *,
    expected_intents: int,
    kills: int,
    kill_window_s: tuple[float, float] = (0.0, 0.05),
    before_publish: Callable[[TradeEvent], None] | None = None,
) -> CrashRun:
    """Publish each event and (while kills are left) SIGKILL the engine that took it, a random
    moment into its fan-out, then start it again (the other engine carries on meanwhile).
    Returns once every intent is final."""
    rng = random.Random(42)
    run = CrashRun()
    redis = connect(env["REDIS_URL"])
    bus = StreamBus(redis, stream)
    try:
        with Engines(env, log, stream, "--claim-idle-ms", "300", "--chunk", "40", *engine_args) as procs:
            engines = [procs.start(), procs.start()]
            await procs.until_consuming()
            for ev in events:
                if before_publish is not None:
                    before_publish(ev)
                msg_id = await bus.publish(ev.to_record())
                if run.kills >= kills:
                    continue
                owner = await taken_by(redis, stream, msg_id)
                k = next((n for n, e in enumerate(engines) if owner == e.pid), None)
                if k is None:  # already done: kill whichever works, all the same
                    await until(lambda: _some(procs.ready(e) for e in engines), "an engine", stall_s=120)
                    k = rng.choice([n for n, e in enumerate(engines) if procs.ready(e)])
                else:
                    await fan_out_under_way(pool, ev.event_id)
                await asyncio.sleep(rng.uniform(*kill_window_s))
                procs.kill(engines[k])
                run.kills += 1
                # Did the kill cut this event's fan-out short?
                run.cut_mid_fanout += bool(
                    await pool.fetchval(
                        f"SELECT count(*) FROM copy_intents WHERE leader_event_id = $1 AND NOT ({FINAL})",
                        ev.event_id,
                    )
                )
                engines[k] = procs.start()

            def alive() -> None:
                assert all(p.poll() is None for p in engines), procs.tail()

            await until_progress_done(
                lambda: final_intents(pool), expected_intents, "intents settled", stall_s=120, check=alive
            )
    finally:
        await redis.delete(stream)
        await redis.aclose()
    outcomes = await pool.fetch(
        "SELECT action, state, refusal_reason, count(*) AS n FROM copy_intents GROUP BY 1, 2, 3 ORDER BY 1, 2"
    )
    print(f"kills: {run.kills}, inside a fan-out: {run.cut_mid_fanout}, outcomes:")
    print([tuple(r.values()) for r in outcomes])
    return run


async def fan_out_under_way(pool: asyncpg.Pool, event_id: str, timeout_s: float = 10) -> None:
    """Until some of the event's intents are written and not all are final (or it is over)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        row = await pool.fetchrow(
            f"SELECT count(*) AS n, count(*) FILTER (WHERE {FINAL}) AS done FROM copy_intents WHERE leader_event_id = $1",
            event_id,
        )
        if row["n"] and (row["done"] or row["n"] > 40):
            return
        await asyncio.sleep(0.005)


async def taken_by(redis: object, stream: str, msg_id: str, group: str = "engines") -> int | None:
    """The pid of the engine holding this message (consumer names end with it), once one has
    read it; None if it was acked before we looked."""
    for _ in range(500):
        pending = await redis.xpending_range(stream, group, min=msg_id, max=msg_id, count=1)  # type: ignore[attr-defined]
        if pending:
            return int(str(pending[0]["consumer"]).rsplit("-", 1)[1])
        info = await redis.xinfo_groups(stream)  # type: ignore[attr-defined]
        delivered = next((g["last-delivered-id"] for g in info if g["name"] == group), "0-0")
        if _after_or_at(delivered, msg_id):
            return None  # read and already acked
        await asyncio.sleep(0.005)
    return None


def _after_or_at(a: str, b: str) -> bool:
    return tuple(int(x) for x in a.split("-")) >= tuple(int(x) for x in b.split("-"))


async def paper_crashes(
    pool: asyncpg.Pool,
    db_url: str,
    redis_url: str,
    stream: str,
    tmp_path: Path,
    *,
    followers: int,
    positions: int,
    kills: int,
) -> tuple[CrashRun, dict[str, int]]:
    profiles = await add_followers(pool, followers)
    events = interleaved(position_events(positions, partial=True), newest_first_every=3)
    env = engine_env(db_url, redis_url, tmp_path / "home")
    run = await crash_run(
        pool,
        env,
        stream,
        tmp_path / "engines.log",
        events,
        ["--paper-latency-ms", "40"],
        expected_intents=followers * len(events),
        kills=kills,
    )
    figures = await copy_figures(pool, profiles, events)
    print(f"{followers} followers, {len(events)} events, {run.kills} kills:", figures)
    assert run.cut_mid_fanout >= kills // 2, (
        f"only {run.cut_mid_fanout} of {run.kills} kills landed mid fan-out"
    )
    assert figures["duplicates"] == 0, figures
    assert (figures["missing"], figures["left_open"], figures["venue_open"]) == (0, 0, 0), figures
    states = {r["state"] for r in await pool.fetch("SELECT DISTINCT state FROM copy_intents")}
    assert states <= {"filled", "resolved", "refused"}, states
    return run, figures


async def test_sigkills_beside_a_second_engine_copy_each_position_exactly_once(
    migrated_pool: asyncpg.Pool, empty_db_url: str, redis_server_url: str, stream_name: str, tmp_path: Path
) -> None:
    await paper_crashes(
        migrated_pool,
        empty_db_url,
        redis_server_url,
        stream_name,
        tmp_path,
        followers=100,
        positions=3,
        kills=8,
    )


@pytest.mark.soak
async def test_soak_a_kill_after_every_event_over_150_followers(
    migrated_pool: asyncpg.Pool, empty_db_url: str, redis_server_url: str, stream_name: str, tmp_path: Path
) -> None:
    await paper_crashes(
        migrated_pool,
        empty_db_url,
        redis_server_url,
        stream_name,
        tmp_path,
        followers=150,
        positions=12,
        kills=36,
    )


def open_close_events(n: int) -> list[TradeEvent]:
    """Opens of positions 0, 2, 4, ... each closed by the next event; every event at its own price."""
    events: list[list[TradeEvent]] = position_events(n // 2)
    return [ev for pair in events for ev in pair]


@pytest.mark.soak
async def test_soak_sigkills_during_onchain_fanouts_leave_one_order_per_copy_on_the_contracts(
    migrated_pool: asyncpg.Pool, empty_db_url: str, redis_server_url: str, stream_name: str, tmp_path: Path
) -> None:
    """The same crashes against anvil. The check reads the chain, not our tables: every
    transaction the delegate ever sent (its nonce says how many) is decoded from the node, and
    each (follower, open event) appears exactly once — every open carries its event's price as
    the expected price — with as many closes as close events and nothing left open."""
    pool = migrated_pool
    followers = 100
    with local_venue_chain() as local:
        wallets = local.add_followers(followers)
        profiles = await add_followers(pool, followers, wallets=wallets)
        events = open_close_events(10)
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
            run = await crash_run(
                pool,
                env,
                stream_name,
                tmp_path / "engines.log",
                events,
                ["--venue", "onchain"],
                expected_intents=followers * len(events),
                kills=2 * len(events),
                kill_window_s=(0.1, 1.5),
                before_publish=keeper_price,
            )
        assert keeper.errors == []
        assert run.cut_mid_fanout >= len(events), f"only {run.cut_mid_fanout} kills landed inside a fan-out"
        calls = delegate_calls(local)
        states = await pool.fetch("SELECT state, count(*) AS n FROM copy_intents GROUP BY state")
        open_counts = {w: local.chain.trading.functions.openCount(w, 1).call() for w in wallets}
    opens = Counter((follower, price) for follower, name, price in calls if name == "openTrade")
    closes = Counter(follower for follower, name, _ in calls if name == "closeTradeMarket")
    open_prices = {int(Decimal(ev.price) * E10) for ev in events if ev.kind is EventKind.OPEN}  # type: ignore[arg-type]
    print({r["state"]: r["n"] for r in states}, f"{len(calls)} delegate transactions")
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
