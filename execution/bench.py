"""Copy-engine benchmarks (`vanta bench`): leader event in → orders at the paper venue, for one
follower and for 1,000, through real PostgreSQL; the engine process's resident memory; and on a
local chain, a leader's order executed → the indexer sees it → our delegate's order for the
follower accepted by the node (the latency a follower pays in slippage)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from data.events import EventKind, Side, TradeEvent
from data.pairs import builtin_catalogue

LEADER = "0x" + "be" * 20


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _open(n: int) -> TradeEvent:
    now = int(time.time())
    return TradeEvent(
        event_id=f"bench:{n}",
        venue="avantis",
        source="chain",
        trader=LEADER,
        pair_index=1,
        kind=EventKind.OPEN,
        trade_index=n,
        open_ts=now,
        ts=now,
        side=Side.LONG,
        collateral_usdc=1_000_000_000,
        leverage=Decimal(10),
        price=Decimal(60_000),
    )


def _p99_ms(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2)


async def _run() -> dict[str, float]:
    from execution.copy.engine import CopyEngine, EngineConfig
    from execution.copy.follows import add_follow
    from execution.copy.model import FollowConfig, SizingMode
    from execution.copy.profiles import ensure_profile
    from execution.venues.paper import DictPriceFeed, PaperVenue
    from infra import db, embedded
    from infra.settings import get_settings

    catalogue = builtin_catalogue()
    config = FollowConfig(SizingMode.FIXED, fixed_collateral_usdc=100_000_000)
    figures: dict[str, float] = {}
    async with db.scratch_database(embedded.database_url(get_settings())) as url:
        pool = await db.create_pool(url)
        try:
            feed = DictPriceFeed({1: Decimal(60_000)})
            venue = PaperVenue(pool, catalogue, feed)
            engine_config = EngineConfig(max_delay_ms=3_600_000, chunk=1000)
            async with CopyEngine(pool, None, venue, feed, catalogue, engine_config) as engine:
                for followers, events, name in (
                    (1, 300, "copy_single_p99_ms"),
                    (1000, 30, "copy_fanout_1000_p99_ms"),
                ):
                    async with pool.acquire() as conn:
                        await conn.execute("UPDATE leader_follows SET status = 'stopped'")
                        for i in range(followers):
                            pid = await ensure_profile(
                                conn,
                                telegram_user_id=followers * 10_000 + i,
                                name="b",
                                venue="paper",
                                equity_usdc=10**10,
                            )
                            await add_follow(conn, pid, LEADER, config)
                        await conn.execute(
                            "UPDATE leader_follows SET followed_at = now() - interval '1 minute'"
                        )
                        # A live database has statistics (autovacuum keeps them); one just filled
                        # has none and plans the follows' join as a nested loop over every profile.
                        await conn.execute("ANALYZE")
                    samples = []
                    for n in range(events):
                        event = _open(followers * 100_000 + n)
                        started = time.perf_counter()
                        outcome = await engine.handle(event)
                        samples.append(time.perf_counter() - started)
                        assert outcome.get("filled") == followers, outcome
                    figures[name] = _p99_ms(samples)
            figures["executor_rss_mb"] = round(_rss_mb(), 1)
        finally:
            await pool.close()
    return figures


def run() -> dict[str, float]:
    figures = asyncio.run(_run())
    figures.update(asyncio.run(_onchain_e2e()))
    return figures


async def _onchain_e2e(samples: int = 15) -> dict[str, float]:
    """A leader opens then closes on the local Avantis mock, `samples` times. Each time, from the
    moment the keeper's execution of the leader's order is sent (anvil mines it at once) to the
    moment the node accepted our delegate's `delegatedAction` for the follower: the indexer's tail
    (woken by the node's new-heads subscription), PostgreSQL, the Redis stream, the engine's
    checks, pre-flight call, signing and broadcast."""
    import hashlib
    import uuid

    from eth_account import Account

    from data.sources.chain.indexer import Indexer, IndexerConfig
    from data.sources.chain.rpc import ChainRpc
    from execution.copy.engine import CopyEngine, EngineConfig, LastPriceFeed
    from execution.copy.follows import add_follow
    from execution.copy.model import FollowConfig, SizingMode
    from execution.copy.profiles import ensure_profile
    from execution.venues.onchain import OnchainConfig, OnchainVenue
    from infra import bus, db, embedded
    from infra.chain.anvil import DEFAULT_KEYS, run_anvil
    from infra.chain.contracts import deploy
    from infra.chain.keeper import Keeper
    from infra.settings import get_settings

    e10, usdc, fee_wei, chain_id, btc = 10**10, 10**6, 10**14, 31337, 1
    key = "0x" + hashlib.sha256(b"vanta-bench-delegate").hexdigest()
    delegate = Account.from_key(key).address

    class TimedVenue(OnchainVenue):
        """Notes when the node accepted each broadcast."""

        accepted = asyncio.Event()

        async def _broadcast(self, raws: list[bytes]) -> None:
            await super()._broadcast(raws)
            self.accepted.set()

    settings = get_settings()
    with run_anvil() as node:
        chain = deploy(node.http_url, DEFAULT_KEYS[0])
        fn = chain.trading.functions
        chain.send_as(chain.usdc.functions.mint(chain.trading.address, 10**13), chain.keeper)
        chain.send_as(fn.setExecutionFee(fee_wei), chain.keeper)
        chain.impersonate(delegate)  # gas money; it signs with its own key
        chain.rpc("anvil_stopImpersonatingAccount", [delegate])
        leader = chain.funded_trader("vanta-bench-leader", 10**7 * usdc)
        follower = chain.funded_trader("vanta-bench-follower", 10**7 * usdc)
        chain.send_as(fn.setDelegate(delegate), follower)
        price = 60_000 * e10
        async with db.scratch_database(embedded.database_url(settings)) as url:
            pool = await db.create_pool(url)
            redis = bus.connect(embedded.redis_url(settings))
            stream = f"bench:onchain:{uuid.uuid4().hex[:8]}"
            rpc = ChainRpc(node.http_url, max_attempts=5)
            venue = TimedVenue(
                pool,
                ChainRpc(node.http_url, max_attempts=5),
                key,
                OnchainConfig(chain.trading.address, chain_id, execution_fee_wei=fee_wei, fill_timeout_s=20),
                pairs=[btc],
            )
            samples_s: list[float] = []
            stop = asyncio.Event()
            try:
                async with pool.acquire() as conn:
                    pid = await ensure_profile(
                        conn,
                        telegram_user_id=1,
                        name="bench",
                        venue="onchain",
                        equity_usdc=10**10,
                        wallet_address=follower,
                    )
                    await add_follow(
                        conn, pid, leader, FollowConfig(SizingMode.FIXED, fixed_collateral_usdc=100 * usdc)
                    )
                    await conn.execute("UPDATE leader_follows SET followed_at = now() - interval '1 minute'")
                indexer_config = IndexerConfig(
                    chain_id,
                    (chain.trading.address,),
                    confirmation_depth=0,
                    poll_interval_s=0.5,
                    events_stream=stream,
                )
                engine_config = EngineConfig(max_delay_ms=600_000, stream=stream, group="bench")
                async with (
                    Indexer(rpc, pool, redis, indexer_config) as indexer,
                    CopyEngine(
                        pool, redis, venue, LastPriceFeed(), builtin_catalogue(), engine_config
                    ) as engine,
                ):
                    tasks = [
                        asyncio.create_task(indexer.tail(node.ws_url, stop)),
                        asyncio.create_task(engine.run(stop, start_id="0")),
                    ]
                    with Keeper(chain, lambda pair: price, traders={follower}):
                        for k in range(2 * samples):
                            if k % 2 == 0:
                                # A position is keyed by its trade index and opening second: the
                                # next one at index 0 must open in a later second than the last.
                                chain.rpc("evm_increaseTime", [1])
                                trade = (leader, btc, 0, 1_000 * usdc, 0, 0, True, 10 * e10, 0, 0, 0)
                                call = fn.openTrade(trade, 0, e10)
                            else:
                                call = fn.closeTradeMarket(btc, 0, fn.openTrades(leader, btc, 0).call()[3])
                            receipt = await asyncio.to_thread(chain.send_as, call, leader, fee_wei)
                            venue.accepted.clear()
                            execute = fn.executeMarketOrder(chain.order_id(receipt), price)
                            started = time.perf_counter()
                            await asyncio.to_thread(
                                execute.transact, {"from": chain.keeper, "gas": 1_500_000}
                            )
                            await asyncio.wait_for(venue.accepted.wait(), 60)
                            samples_s.append(time.perf_counter() - started)
                            await _settled(pool, k + 1)  # the copy is filled before the next order
                    stop.set()
                    await asyncio.gather(*tasks)
            finally:
                stop.set()
                await rpc.close()
                await venue.close()
                await redis.delete(stream)
                await redis.aclose()
                await pool.close()
    return {
        "copy_onchain_e2e_p99_ms": _p99_ms(samples_s),
        "copy_onchain_e2e_median_ms": _median_ms(samples_s),
    }


async def _settled(pool: Any, intents: int) -> None:
    """Until `intents` copies exist and none is in flight (polled: the engine runs beside us)."""
    while True:
        row = await pool.fetchrow(
            "SELECT count(*) AS n, count(*) FILTER (WHERE state IN ('planned', 'sent', 'unknown')) AS busy "
            "FROM copy_intents"
        )
        if row["n"] >= intents and not row["busy"]:
            return
        await asyncio.sleep(0.02)


def _median_ms(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[len(ordered) // 2] * 1000, 2)
