"""Benchmarks of chain ingest (`vanta bench`): decoding alone (no node), and a backfill from a
local anvil node into PostgreSQL and the stream."""

from __future__ import annotations

import time

from eth_abi import encode

from data.protocol.abi import EVENTS, TRADE_TYPE
from data.protocol.decode import Registry
from data.protocol.mapping import ChainMapper, LogContext

_ME = ["uint256", TRADE_TYPE, "bool", "uint256", "uint256", "int256", "uint256", "bool"]


def _logs(n: int) -> list[tuple[list[bytes], bytes, LogContext]]:
    topic = next(
        bytes.fromhex(a.topic0[2:]) for a in EVENTS if a.name == "MarketExecuted" and a.version == "1.5"
    )
    out = []
    for i in range(n):
        trade = (
            "0x" + f"{i % 5000:040x}",
            i % 3,
            i % 5,
            1_000_000_000,
            0,
            60_000 * 10**10,
            i % 2 == 0,
            10 * 10**10,
            0,
            0,
            1_700_000_000 + i,
        )
        opening = i % 2 == 0
        data = encode(
            _ME,
            [
                i,
                trade,
                opening,
                60_000 * 10**10,
                1_000_000_000,
                0 if opening else 10**10,
                0 if opening else 1_090_000_000,
                False,
            ],
        )
        out.append(([topic], data, LogContext(8453, f"0x{i:064x}", 0, i, f"0x{i:064x}", 1_700_000_000 + i)))
    return out


async def _backfill(rpc_url: str, trading: str, head: int) -> dict[str, float]:
    """Index [0, head] from the node into a scratch database of the configured PostgreSQL
    server, publishing to a scratch stream: the whole pipeline, node to stream."""
    from data.sources.chain.indexer import Indexer, IndexerConfig
    from data.sources.chain.rpc import ChainRpc
    from infra import bus, db, embedded
    from infra.settings import get_settings

    settings = get_settings()
    redis = bus.connect(embedded.redis_url(settings))
    stream = f"bench:backfill:{time.time_ns()}"
    async with db.scratch_database(embedded.database_url(settings)) as url:
        pool = await db.create_pool(url)
        rpc = ChainRpc(rpc_url)
        try:
            config = IndexerConfig(31337, (trading.lower(),), confirmation_depth=0, events_stream=stream)
            async with Indexer(rpc, pool, redis, config) as indexer:
                started = time.perf_counter()
                totals = await indexer.backfill(0, head)
                elapsed = time.perf_counter() - started
            return {"backfill_logs_per_s": round(totals.logs / elapsed), "backfill_logs": totals.logs}
        finally:
            await rpc.close()
            await pool.close()
            await redis.delete(stream)
            await redis.aclose()


def backfill_from_local_node(actions: int = 400) -> dict[str, float]:
    """Trading on the local Avantis mock (anvil), then one timed backfill of all of it."""
    import asyncio

    from infra.chain.activity import Activity
    from infra.chain.anvil import DEFAULT_KEYS, run_anvil
    from infra.chain.contracts import deploy

    with run_anvil() as node:
        chain = deploy(node.http_url, DEFAULT_KEYS[0])
        chain.send_as(chain.usdc.functions.mint(chain.trading.address, 10**13), chain.keeper)
        Activity(chain, seed=11, traders=20).run(actions)
        head = chain.w3.eth.block_number
        return asyncio.run(_backfill(node.http_url, chain.trading.address, head))


def run() -> dict[str, float]:
    figures = backfill_from_local_node()
    logs = _logs(100_000)
    registry, mapper = Registry(), ChainMapper()
    t0 = time.perf_counter()
    events = [mapper.map(registry.decode(topics, data), ctx) for topics, data, ctx in logs]
    elapsed = time.perf_counter() - t0
    assert all(e is not None for e in events)
    return {"decode_logs_per_s": round(len(logs) / elapsed), **figures}
