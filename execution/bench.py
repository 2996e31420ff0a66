"""Copy-engine benchmarks (`vanta bench`): leader event in → orders at the paper venue, for one
follower and for 1,000, through real PostgreSQL; and the engine process's resident memory."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

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
    return asyncio.run(_run())
