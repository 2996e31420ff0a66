"""A leader's equity, for proportional sizing: the leader's collateral in a trade as a share of
everything the leader has, applied to the follower's equity.

On chain a leader's equity is the USDC in the wallet plus the collateral in open positions. The
positions come from `trader_positions` (kept by the tracker) minus the one the event is about,
whose collateral is taken from the event itself: the tracker may or may not have applied it yet,
and either way it is counted once. Unrealized PnL is left out: it is not the leader's until
closed, and counting it would size copies up exactly when the leader is most exposed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import asyncpg

from data.events import TradeEvent

if TYPE_CHECKING:
    from data.sources.chain.rpc import ChainRpc


class LeaderEquity(Protocol):
    async def equity_usdc(self, conn: asyncpg.Connection, event: TradeEvent) -> int | None: ...


class FixedLeaderEquity:
    """Equity given by whoever runs the engine (tests, the paper demo, a manual override)."""

    def __init__(self, by_trader: dict[str, int]):
        self.by_trader = {k.lower(): v for k, v in by_trader.items()}

    async def equity_usdc(self, conn: asyncpg.Connection, event: TradeEvent) -> int | None:
        return self.by_trader.get(event.trader.lower())


class ChainLeaderEquity:
    def __init__(self, rpc: ChainRpc | None, usdc_address: str, *, rpc_url: str | None = None):
        self.rpc = rpc
        self.usdc = usdc_address
        self._rpc_url = rpc_url

    @classmethod
    def on_demand(cls, rpc_url: str, usdc_address: str) -> ChainLeaderEquity:
        """Connects (and imports web3) only when a proportional copy first asks: most engines
        never do, and start faster for it."""
        return cls(None, usdc_address, rpc_url=rpc_url)

    async def close(self) -> None:
        if self.rpc is not None and self._rpc_url is not None:
            await self.rpc.close()

    async def equity_usdc(self, conn: asyncpg.Connection, event: TradeEvent) -> int | None:
        from data.protocol.abi import encode_call

        if self.rpc is None:
            from data.sources.chain.rpc import ChainRpc

            assert self._rpc_url is not None
            self.rpc = ChainRpc(self._rpc_url, max_attempts=3)
        raw = await self.rpc.eth_call(self.usdc, encode_call("balanceOf", ["address"], [event.trader]))
        wallet = int.from_bytes(raw, "big")
        in_positions = await conn.fetchval(
            "SELECT coalesce(sum(collateral_usdc), 0)::bigint FROM trader_positions "
            "WHERE trader = $1 AND status = 'open' AND position_key <> $2",
            event.trader.lower(),
            event.position_key,
        )
        return wallet + in_positions + (event.collateral_usdc or 0)
