"""A local Avantis on anvil with followers who delegated to our key, a keeper, and the on-chain
venue: what the on-chain copy tests share."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import asyncpg
from eth_account import Account

from data.sources.chain.rpc import ChainRpc
from execution.venues.onchain import OnchainConfig, OnchainVenue
from infra.chain.anvil import DEFAULT_KEYS, Anvil, run_anvil
from infra.chain.contracts import LocalAvantis, deploy
from infra.chain.keeper import Keeper

E10 = 10**10
USDC = 10**6
CHAIN_ID = 31337
EXECUTION_FEE_WEI = 10**14
DELEGATE_KEY = "0x" + hashlib.sha256(b"vanta-test-delegate").hexdigest()


@dataclass
class LocalVenueChain:
    node: Anvil
    chain: LocalAvantis
    prices: dict[int, int] = field(default_factory=lambda: {0: 3_000 * E10, 1: 60_000 * E10})
    followers: list[str] = field(default_factory=list)
    venues: list[OnchainVenue] = field(default_factory=list)

    @property
    def delegate(self) -> str:
        return Account.from_key(DELEGATE_KEY).address

    def add_followers(self, n: int, *, delegated: bool = True, usdc: int = 100_000 * USDC) -> list[str]:
        """Wallets with USDC, an allowance to the trading contract and (unless told) our delegate."""
        added = []
        for _ in range(n):
            addr = self.chain.funded_trader(f"vanta-follower:{len(self.followers)}", usdc)
            if delegated:
                self.chain.send_as(self.chain.trading.functions.setDelegate(self.delegate), addr)
            self.followers.append(addr)
            added.append(addr)
        return added

    def trade(self, wallet: str, pair: int, index: int) -> dict[str, int]:
        values = self.chain.trading.functions.openTrades(wallet, pair, index).call()
        names = (
            "trader",
            "pair",
            "index",
            "collateral",
            "ts_field",
            "open_price",
            "buy",
            "leverage",
            "tp",
            "sl",
        )
        return dict(zip(names, values, strict=False))

    def usdc_of(self, wallet: str) -> int:
        return int(self.chain.usdc.functions.balanceOf(wallet).call())

    def keeper(self, traders: list[str] | None = None) -> Keeper:
        return Keeper(self.chain, lambda pair: self.prices[pair], traders=set(traders) if traders else None)

    def venue(self, pool: asyncpg.Pool, **config: object) -> OnchainVenue:
        settings = {"fill_timeout_s": 20.0, **config}
        venue = OnchainVenue(
            pool,
            ChainRpc(self.node.http_url, max_attempts=5),
            DELEGATE_KEY,
            OnchainConfig(self.chain.trading.address, CHAIN_ID, **settings),  # type: ignore[arg-type]
            pairs=[0, 1],
        )
        self.venues.append(venue)
        return venue

    async def close(self) -> None:
        for venue in self.venues:
            await venue.close()


@contextmanager
def local_venue_chain() -> Iterator[LocalVenueChain]:
    with run_anvil() as node:
        chain = deploy(node.http_url, DEFAULT_KEYS[0])
        chain.send_as(chain.usdc.functions.mint(chain.trading.address, 10**13), chain.keeper)
        chain.send_as(chain.trading.functions.setExecutionFee(EXECUTION_FEE_WEI), chain.keeper)
        local = LocalVenueChain(node, chain)
        chain.impersonate(local.delegate)  # funds the delegate with gas money
        chain.rpc("anvil_stopImpersonatingAccount", [local.delegate])  # it signs with its own key
        yield local
