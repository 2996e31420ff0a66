"""The chain indexer end to end on a real anvil node, through a provider that fails.

Many traders open, add margin, partially close, close, hit TP/SL, get liquidated and move TP/SL
on the local Avantis mock. `vanta index backfill` indexes the first half through a proxy that
drops every few calls and refuses large log ranges; `vanta index tail` follows the rest over a
websocket, is SIGKILLed mid-way and restarted, and lives through a reorg (anvil snapshot/revert,
then a different, longer branch). Afterwards PostgreSQL holds exactly the events the contracts
emitted on the final chain, each once, and the undecodable logs raw.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from data.events import TradeEvent
from data.protocol.decode import DecodeError, Registry
from data.protocol.mapping import ChainMapper, LogContext
from data.sources.chain.indexer import RETRACTED_STREAM, Indexer, IndexerConfig
from data.sources.chain.rpc import ChainRpc
from infra.bus import EVENTS_STREAM, connect
from infra.chain.activity import Activity
from infra.chain.anvil import DEFAULT_KEYS, Anvil, _free_port, run_anvil
from infra.chain.contracts import LocalAvantis, deploy
from tests.rpc_proxy import FlakyRpcProxy

pytestmark = pytest.mark.integration
VANTA = str(Path(sys.executable).parent / "vanta")
CHAIN_ID = 31337
DEPTH = 1


@pytest.fixture
def chain() -> Iterator[tuple[Anvil, LocalAvantis]]:
    with run_anvil() as node:
        local = deploy(node.http_url, DEFAULT_KEYS[0])
        local.send_as(local.usdc.functions.mint(local.trading.address, 10**13), local.keeper)
        yield node, local


def chain_truth(
    node: Anvil, addresses: list[str], to_block: int
) -> tuple[dict[str, dict], set[tuple[str, int]]]:
    """What the final chain says up to `to_block`: canonical events by id, and the logs no decoder
    knows."""
    registry, mapper = Registry(), ChainMapper()
    events: dict[str, dict] = {}
    undecodable: set[tuple[str, int]] = set()
    query = {"fromBlock": "0x0", "toBlock": hex(to_block), "address": addresses}
    logs = node.rpc("eth_getLogs", [query])
    for lg in logs:  # type: ignore[union-attr]
        ctx = LogContext(
            CHAIN_ID,
            lg["transactionHash"],
            int(lg["logIndex"], 16),
            int(lg["blockNumber"], 16),
            lg["blockHash"],
            int(lg["blockTimestamp"], 16),
        )
        try:
            decoded = registry.decode(
                [bytes.fromhex(t[2:]) for t in lg["topics"]], bytes.fromhex(lg["data"][2:])
            )
        except DecodeError:
            undecodable.add((ctx.tx_hash, ctx.log_index))
            continue
        ev = mapper.map(decoded, ctx)
        if ev is not None:
            events[ev.event_id] = ev.to_record()
    return events, undecodable


async def stored(pool: asyncpg.Pool) -> tuple[dict[str, dict], set[tuple[str, int]]]:
    rows = await pool.fetch("SELECT raw FROM trade_events")
    events = {}
    for r in rows:
        ev = TradeEvent.from_record(json.loads(r["raw"]))
        events[ev.event_id] = ev.to_record()
    raw = {
        (r["tx_hash"], r["log_index"])
        for r in await pool.fetch("SELECT tx_hash, log_index FROM raw_chain_logs")
    }
    return events, raw


async def checkpoint(pool: asyncpg.Pool) -> int:
    return (
        await pool.fetchval(
            "SELECT last_block FROM indexer_checkpoints WHERE name = $1", f"avantis:{CHAIN_ID}"
        )
        or -1
    )


async def caught_up(pool: asyncpg.Pool, node: Anvil, log: Path, timeout: float = 30.0) -> int:
    target = int(node.rpc("eth_blockNumber"), 16) - DEPTH  # type: ignore[arg-type]
    started = time.monotonic()
    while (cp := await checkpoint(pool)) < target:
        assert time.monotonic() < started + timeout, (
            f"stuck at {cp} for {time.monotonic() - started:.1f} s, head - depth = {target}: "
            f"{log.read_text()[-3000:]}"
        )
        await asyncio.sleep(0.1)
    return cp


def tail_process(
    env: dict[str, str], proxy: FlakyRpcProxy, node: Anvil, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        return subprocess.Popen(
            [VANTA, "index", "tail", "--rpc-url", proxy.url, "--ws-url", node.ws_url],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


async def test_backfill_tail_kill_reorg_flaky_rpc_exactly_once(
    chain: tuple[Anvil, LocalAvantis], empty_db_url: str, redis_server_url: str, tmp_path: Path
) -> None:
    node, local = chain
    # The USDC token is watched too: its Transfer/Approval logs have no decoder and must be kept raw.
    addresses = [local.trading.address.lower(), local.usdc.address.lower()]
    redis = connect(redis_server_url)
    stream_start = (
        (await redis.xinfo_stream(EVENTS_STREAM))["last-generated-id"]
        if await redis.exists(EVENTS_STREAM)
        else "0-0"
    )
    retracted_start = (
        (await redis.xinfo_stream(RETRACTED_STREAM))["last-generated-id"]
        if await redis.exists(RETRACTED_STREAM)
        else "0-0"
    )
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "VANTA_HOME": str(tmp_path / "home"),
        "DATABASE_URL": empty_db_url,
        "REDIS_URL": redis_server_url,
        "CHAIN_ID": str(CHAIN_ID),
        "AVANTIS_ADDRESSES": ",".join(addresses),
        "CONFIRMATION_DEPTH": str(DEPTH),
        "EVENT_BACKFILL_BLOCKS": "64",
        # Long enough that only the websocket's new-head notifications can keep the tail current.
        "EVENT_MONITORING_INTERVAL": "60",
    }
    first = Activity(local, seed=1, traders=10)
    done = first.run(140)
    half = int(node.rpc("eth_blockNumber"), 16)  # type: ignore[arg-type]

    with FlakyRpcProxy(node.http_url, fail_every=4, max_log_blocks=40) as proxy:
        backfill = subprocess.run(
            [
                VANTA,
                "index",
                "backfill",
                "--from-block",
                "0",
                "--to-block",
                str(half),
                "--rpc-url",
                proxy.url,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert backfill.returncode == 0, backfill.stderr[-3000:]
        report = json.loads(backfill.stdout)
        assert report["to_block"] == half and report["blocks"] == half + 1
        assert report["inserted"] > 100 and report["undecoded"] > 0
        assert proxy.too_large > 0, "ranges over 40 blocks were never asked for, or never halved"
        assert sum(proxy.failures.values()) > 10
        assert "rpc call failed, retrying" in backfill.stderr

        pool = await asyncpg.create_pool(empty_db_url, min_size=1, max_size=2)
        assert await checkpoint(pool) == half
        log = tmp_path / "tail.log"
        tail = tail_process(env, proxy, node, log)
        try:
            # The rest of the history arrives while the tail runs; it is SIGKILLed mid-way.
            second = asyncio.create_task(asyncio.to_thread(first.run, 120))
            while await checkpoint(pool) < half + 30:
                await asyncio.sleep(0.05)
            tail.send_signal(signal.SIGKILL)
            tail.wait(10)
            await second
            first.run(40)  # while nobody indexes
            tail = tail_process(env, proxy, node, log)
            await caught_up(pool, node, log)

            # A reorg deeper than the confirmation depth: a branch is indexed, then abandoned.
            snapshot = node.rpc("evm_snapshot")
            Activity(local, seed=2, traders=3).run(15)
            orphan_head = await caught_up(pool, node, log)
            orphaned = set((await stored(pool))[0])
            node.rpc("evm_revert", [snapshot])
            Activity(local, seed=3, traders=4).run(25)
            while int(node.rpc("eth_blockNumber"), 16) <= orphan_head + 2:  # type: ignore[arg-type]
                node.rpc("evm_mine")
            await caught_up(pool, node, log)
            await asyncio.sleep(0.5)
            assert tail.poll() is None, log.read_text()[-3000:]
        finally:
            tail.send_signal(signal.SIGTERM)
            try:
                tail.wait(15)
            except subprocess.TimeoutExpired:
                tail.kill()
        tail_log = log.read_text()

    final = await checkpoint(pool)
    assert final >= int(node.rpc("eth_blockNumber"), 16) - DEPTH  # type: ignore[arg-type]
    truth, truth_raw = chain_truth(node, addresses, final)
    got, got_raw = await stored(pool)
    orphaned -= set(truth)
    assert done["liquidation"] and done["tp"] and done["sl"] and done["partial_close"] and done["add_margin"]
    assert orphaned, "the abandoned branch held no events: the reorg tested nothing"
    assert not got.keys() - truth.keys(), "stored events the final chain does not have"
    assert not truth.keys() - got.keys(), "events on the chain missing from the database"
    assert got == truth  # every field, exactly
    oracle_sl = [e for e in got.values() if e["kind"] == "tp_sl_update" and e["order_id"] is not None]
    assert oracle_sl, "Callbacks' SlUpdated (oracle-run SL updates) became canonical TP/SL updates"
    assert all(e["open_fee_usdc"] > 0 for e in got.values() if e["kind"] == "open")
    assert got_raw == truth_raw and got_raw
    assert "reorg: rolled back orphaned blocks" in tail_log
    assert "subscribed to new heads" in tail_log

    published = [
        json.loads(m[1]["data"])["event_id"] for m in await redis.xrange(EVENTS_STREAM, f"({stream_start}")
    ]
    assert set(published) >= set(truth)  # at least once; consumers dedupe by id
    assert set(published) - set(truth) == orphaned
    retractions = await redis.xrange(RETRACTED_STREAM, f"({retracted_start}")
    assert {i for m in retractions for i in json.loads(m[1]["data"])["event_ids"]} == orphaned
    await pool.close()
    await redis.aclose()


async def test_restart_resumes_at_checkpoint_and_unknown_topics_are_kept(
    chain: tuple[Anvil, LocalAvantis], migrated_pool: asyncpg.Pool
) -> None:
    node, local = chain
    Activity(local, seed=7, traders=4).run(40)
    head = int(node.rpc("eth_blockNumber"), 16)  # type: ignore[arg-type]
    addresses = (local.trading.address.lower(), local.usdc.address.lower())
    config = IndexerConfig(CHAIN_ID, addresses, confirmation_depth=0, initial_range=16)
    rpc = ChainRpc(node.http_url)
    try:
        async with Indexer(rpc, migrated_pool, None, config) as first:
            await first.backfill(0, head // 2)
        async with Indexer(rpc, migrated_pool, None, config) as second:
            totals = await second.backfill(0, head)
        # The second run started after the first one's checkpoint: it read only the rest.
        assert totals.blocks == head - head // 2
        async with Indexer(rpc, migrated_pool, None, config) as third:
            assert (await third.backfill(0, head)).blocks == 0
    finally:
        await rpc.close()
    truth, truth_raw = chain_truth(node, list(addresses), head)
    got, got_raw = await stored(migrated_pool)
    assert got == truth and got_raw == truth_raw
    reasons = {r["reason"] for r in await migrated_pool.fetch("SELECT reason FROM raw_chain_logs")}
    assert all(r.startswith("unknown topic0") for r in reasons)
    # Logs no decoder knows (the USDC token's Transfer and Approval) are counted per topic0.
    from eth_utils import keccak

    from infra.metrics import REGISTRY

    transfer = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
    counted = REGISTRY.get_sample_value(
        "vanta_indexer_undecoded_logs_total", {"topic0": transfer, "reason": "unknown_topic0"}
    )
    stored_transfers = await migrated_pool.fetchval(
        "SELECT count(*) FROM raw_chain_logs WHERE topic0 = $1", transfer
    )
    assert stored_transfers > 0 and counted is not None and counted >= stored_transfers
    opens = [e for e in got.values() if e["kind"] == "open"]
    assert opens and all(e["open_fee_usdc"] > 0 for e in opens), "opens carry their opening fee"


async def test_indexer_refuses_a_node_of_another_chain(
    chain: tuple[Anvil, LocalAvantis], migrated_pool: asyncpg.Pool
) -> None:
    node, _ = chain
    rpc = ChainRpc(node.http_url)
    try:
        with pytest.raises(
            ValueError, match="the node is chain 31337 but the indexer is configured for chain 8453"
        ):
            async with Indexer(rpc, migrated_pool, None, IndexerConfig(8453, ("0x" + "00" * 20,))):
                pass
    finally:
        await rpc.close()


def indexer_env(tmp_path: Path, db_url: str, redis_url: str, addresses: list[str]) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "VANTA_HOME": str(tmp_path / "home"),
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "CHAIN_ID": str(CHAIN_ID),
        "AVANTIS_ADDRESSES": ",".join(addresses),
        "CONFIRMATION_DEPTH": str(DEPTH),
        "EVENT_BACKFILL_BLOCKS": "64",
        "EVENT_MONITORING_INTERVAL": "0.3",
        "METRICS_PORT": "0",
    }


async def test_lagging_and_garbage_answers_lose_no_event(
    chain: tuple[Anvil, LocalAvantis], empty_db_url: str, redis_server_url: str, tmp_path: Path
) -> None:
    """Every other request answered by a node 25 blocks behind (empty log ranges, null blocks),
    every fifth by an HTML page, cut-off JSON or a wrong shape: backfill and tail store exactly
    the events a clean run stores."""
    node, local = chain
    addresses = [local.trading.address.lower()]
    env = indexer_env(tmp_path, empty_db_url, redis_server_url, addresses)
    Activity(local, seed=11, traders=6).run(120)
    head = int(node.rpc("eth_blockNumber"), 16)  # type: ignore[arg-type]
    pool = await asyncpg.create_pool(empty_db_url, min_size=1, max_size=2)
    with FlakyRpcProxy(node.http_url, lag_every=2, lag_blocks=25, garbage_every=5) as proxy:
        backfill = subprocess.run(
            [VANTA, "index", "backfill", "--from-block", "0", "--rpc-url", proxy.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert backfill.returncode == 0, backfill.stderr[-3000:]
        assert json.loads(backfill.stdout)["to_block"] == head - DEPTH
        truth, _ = chain_truth(node, addresses, head - DEPTH)
        got, _ = await stored(pool)
        assert len(truth) > 100 and got == truth, f"stored {len(got)} of {len(truth)} events"
        assert proxy.lagged > 10 and proxy.hidden_logs > 0, "the lagging view never hid anything"
        assert set(proxy.garbage) == {"html", "truncated", "wrong_shape"}

        log = tmp_path / "tail.log"
        with log.open("ab") as sink:
            tail = subprocess.Popen(
                [VANTA, "index", "tail", "--rpc-url", proxy.url, "--ws-url", "none"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                start_new_session=True,
            )
        try:
            Activity(local, seed=12, traders=4).run(60)
            final = await caught_up(pool, node, log, timeout=120)
        finally:
            os.killpg(tail.pid, signal.SIGKILL)
            tail.wait(10)
    truth, _ = chain_truth(node, addresses, final)
    got, _ = await stored(pool)
    assert got == truth, f"stored {len(got)} of {len(truth)} events"
    await pool.close()


async def test_backfill_gives_up_on_an_unreachable_node_naming_it_without_secrets(
    empty_db_url: str, redis_server_url: str, tmp_path: Path
) -> None:
    env = indexer_env(tmp_path, empty_db_url, redis_server_url, ["0x" + "11" * 20])
    secret_url = "https://no-such-node.invalid/v2/sk_live_0123456789abcdef"
    started = time.monotonic()
    result = subprocess.run(
        [VANTA, "index", "backfill", "--from-block", "0", "--rpc-url", secret_url, "--attempts", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("vanta:")]
    assert result.returncode == 1, result.stderr[-2000:]
    assert lines == [
        "vanta: cannot reach the RPC node at https://no-such-node.invalid/*** after 2 attempts "
        + lines[0].split("after 2 attempts ", 1)[1]
    ]
    assert "sk_live" not in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("command", ["tail", "backfill"])
async def test_index_commands_stop_within_5s_of_sigterm_mid_retry(
    command: str, empty_db_url: str, redis_server_url: str, tmp_path: Path
) -> None:
    """The node is a black hole (every request fails): the command is inside its retry loop
    when SIGTERM arrives, and must still be gone within 5 s."""
    from aiohttp import web

    env = indexer_env(tmp_path, empty_db_url, redis_server_url, ["0x" + "11" * 20])
    calls = 0

    async def failing(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(status=503, text="down")

    app = web.Application()
    app.router.add_post("/", failing)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    args = ["--from-block", "0", "--attempts", "1000"] if command == "backfill" else ["--ws-url", "none"]
    proc = subprocess.Popen(
        [VANTA, "index", command, "--rpc-url", f"http://127.0.0.1:{port}", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while calls < 3:  # progress, not a clock: it is retrying
            assert proc.poll() is None and time.monotonic() < deadline
            await asyncio.sleep(0.05)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        while proc.poll() is None and time.monotonic() - sent < 10:
            await asyncio.sleep(0.02)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        await runner.cleanup()
    print(f"{command}: exited {took:.2f} s after SIGTERM")
    assert took < 5, f"{command} took {took:.1f} s to stop"
    assert proc.returncode in (0, 130), proc.stderr.read().decode()[-2000:] if proc.stderr else ""


async def test_tail_survives_redis_and_postgres_restarts(
    chain: tuple[Anvil, LocalAvantis], tmp_path: Path
) -> None:
    """Activity goes on while Redis is SIGKILLed and restarted, then while PostgreSQL is crash-
    stopped for 3 s: the tail stores and publishes every event of the final chain."""
    from tests.servers import RestartablePostgres, RestartableRedis

    node, local = chain
    addresses = [local.trading.address.lower()]
    with RestartablePostgres(tmp_path) as pg, RestartableRedis(tmp_path) as rds:
        env = indexer_env(tmp_path, pg.url, rds.url, addresses)
        log = tmp_path / "tail.log"
        with log.open("ab") as sink:
            tail = subprocess.Popen(
                [VANTA, "index", "tail", "--rpc-url", node.http_url, "--ws-url", "none"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=sink,
                start_new_session=True,
            )
        pool = None
        try:
            deadline = time.monotonic() + 60
            pool = await asyncpg.create_pool(pg.url, min_size=1, max_size=2)
            while True:  # a fresh tail starts at the head: wait for its first checkpoint
                try:
                    if await checkpoint(pool) >= 0:
                        break
                except asyncpg.UndefinedTableError:
                    pass  # not migrated yet
                assert time.monotonic() < deadline and tail.poll() is None, log.read_text()[-3000:]
                await asyncio.sleep(0.2)
            activity = Activity(local, seed=21, traders=5)
            activity.run(30)
            await caught_up(pool, node, log, timeout=60)

            rds.kill()
            activity.run(20)  # indexed while Redis is down: the publish fails, the range is retried
            rds.start()
            await caught_up(pool, node, log, timeout=60)

            await pool.close()
            pg.stop()
            activity.run(20)
            await asyncio.sleep(3)
            pg.start()
            pool = await asyncpg.create_pool(pg.url, min_size=1, max_size=2)
            final = await caught_up(pool, node, log, timeout=60)
            assert tail.poll() is None, log.read_text()[-3000:]
            sent = time.monotonic()
            tail.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(tail.wait, 10)
            took = time.monotonic() - sent
        finally:
            if tail.poll() is None:
                os.killpg(tail.pid, signal.SIGKILL)
            tail.wait(10)
        truth, _ = chain_truth(node, addresses, final)
        got, _ = await stored(pool)
        redis = connect(rds.url)
        published = {json.loads(m[1]["data"])["event_id"] for m in await redis.xrange(EVENTS_STREAM)}
        await redis.aclose()
        await pool.close()
    text = log.read_text()
    print(
        f"tail: stored {len(got)} of {len(truth)} events, published {len(published & set(truth))}, stopped {took:.2f} s after SIGTERM"
    )
    assert got == truth and len(truth) > 30
    assert published >= set(truth)
    assert text.count("server unreachable; retrying with backoff") >= 2, text[-3000:]
    assert code == 0 and took < 5
