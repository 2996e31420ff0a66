"""Shared builders for the copy-engine tests: leader events, followers, a paper venue."""

from __future__ import annotations

import itertools
import time
from decimal import Decimal

import asyncpg

from data.events import EventKind, Side, TradeEvent
from data.pairs import builtin_catalogue
from execution.copy.follows import add_follow
from execution.copy.model import FollowConfig, SizingMode
from execution.copy.profiles import ensure_profile

LEADER = "0x" + "ab" * 20
CATALOGUE = builtin_catalogue()
BTC = 1
_USERS = itertools.count(10_000)


def leader_event(
    kind: EventKind,
    *,
    n: int = 0,
    collateral: int = 1_000_000_000,
    closed: int | None = None,
    price: str = "60000",
    side: Side = Side.LONG,
    leverage: str = "10",
    open_ts: int | None = None,
    ts: int | None = None,
    pair: int = BTC,
    trade_index: int = 0,
) -> TradeEvent:
    now = int(time.time())
    return TradeEvent(
        event_id=f"test:{kind}:{n}:{trade_index}",
        venue="avantis",
        source="chain",
        trader=LEADER,
        pair_index=pair,
        kind=kind,
        trade_index=trade_index,
        open_ts=open_ts if open_ts is not None else now,
        ts=ts if ts is not None else now,
        side=side,
        collateral_usdc=collateral,
        leverage=Decimal(leverage),
        price=Decimal(price),
        size_closed_usdc=closed,
    )


async def add_followers(
    pool: asyncpg.Pool,
    n: int,
    config: FollowConfig | None = None,
    *,
    equity: int = 10_000_000_000,
    wallets: list[str] | None = None,
    venue: str | None = None,
) -> list[int]:
    """`n` followers of LEADER: on paper, or on `venue` (default onchain) with their `wallets`."""
    config = config or FollowConfig(SizingMode.FIXED, fixed_collateral_usdc=100_000_000)
    ids = []
    async with pool.acquire() as conn:
        for k in range(n):
            pid = await ensure_profile(
                conn,
                telegram_user_id=next(_USERS),
                name="main",
                venue=venue or ("onchain" if wallets else "paper"),
                equity_usdc=equity,
                wallet_address=wallets[k] if wallets else None,
            )
            await add_follow(conn, pid, LEADER, config)
            ids.append(pid)
        # Follows start "now"; the tests' leader positions open a second later at the earliest.
        await conn.execute("UPDATE leader_follows SET followed_at = now() - interval '10 seconds'")
    return ids
