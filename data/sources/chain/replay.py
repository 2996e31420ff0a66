"""Replay canonical events as real transactions on the local-chain mock (anvil only).

Simulated traders have no keys: anvil impersonates their addresses. Each open mints the deposit
in mock USDC, approves, calls `openTrade` and has the keeper execute it at the event's price;
closes call `closeTradeMarket` (or the keeper's `executeLimit` for TP, SL and liquidation). Block
timestamps follow the events' times, so the indexer sees the activity as it would see mainnet.
The mock charges the same 0.045 % fees but no rollover or loss protection, so on-chain payouts
match the simulation's only where those are zero.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from infra.chain.contracts import LocalAvantis

LIMIT_TYPES = {"tp": 0, "sl": 1, "liquidation": 2}
VAULT_USDC = 10**13  # 10 M USDC in micro-USDC


class Replayer:
    def __init__(self, chain: LocalAvantis):
        self.chain = chain
        self.w3 = chain.w3
        self.known: set[str] = set()
        self.last_ts = 0

    def _at(self, ts: int) -> None:
        # Blocks need strictly increasing timestamps; events in the same second share none.
        self.last_ts = max(ts, self.last_ts + 1)
        self.chain.rpc("evm_setNextBlockTimestamp", [self.last_ts])

    def _as(self, trader: str) -> str:
        addr = self.w3.to_checksum_address(trader)
        if addr not in self.known:
            self.chain.impersonate(addr)
            self.known.add(addr)
        return addr

    def _keeper(self, fn: Any, ts: int) -> dict[str, Any]:
        self._at(ts)
        return self.chain.send_as(fn, self.chain.keeper)

    def replay(self, events: pl.DataFrame, progress: Callable[[int, int], None] | None = None) -> int:
        """Send every event in time order; returns the number of transactions sent."""
        fn, usdc = self.chain.trading.functions, self.chain.usdc.functions
        sent = 0
        head_ts = int(self.w3.eth.get_block("latest")["timestamp"])
        first_ts = int(events["ts"].min()) if events.height else head_ts + 1
        if first_ts <= head_ts + 1:
            raise ValueError(
                f"the node's head (t={head_ts}) is not before the first event (t={first_ts}); "
                f"start anvil with --timestamp {first_ts - 86_400} to replay this history"
            )
        self.last_ts = head_ts
        # The mock pays winners from its own balance; fund it like Avantis' vault.
        self._keeper(usdc.mint(self.chain.trading.address, VAULT_USDC), head_ts + 1)
        rows = events.sort(["ts", "event_id"]).iter_rows(named=True)
        for n, ev in enumerate(rows):
            trader = self._as(ev["trader"])
            pair, index, kind, ts = ev["pair_index"], ev["trade_index"], ev["kind"], ev["ts"]
            if kind == "open":
                deposit = ev["collateral_usdc"] + ev["open_fee_usdc"]
                self._keeper(usdc.mint(trader, deposit), ts)
                self._at(ts)
                self.chain.send_as(usdc.approve(self.chain.trading.address, deposit), trader)
                trade = (
                    trader,
                    pair,
                    0,
                    deposit,
                    0,
                    ev["price_e10"],
                    ev["side"] == "long",
                    ev["leverage_e10"],
                    ev["tp_e10"] or 0,
                    ev["sl_e10"] or 0,
                    0,
                )
                self._at(ts)
                receipt = self.chain.send_as(fn.openTrade(trade, 0, 10**10), trader)
                self._keeper(fn.executeMarketOrder(self.chain.order_id(receipt), ev["price_e10"]), ts)
                sent += 4
            elif kind in LIMIT_TYPES:
                self._keeper(fn.executeLimit(trader, pair, index, LIMIT_TYPES[kind], ev["price_e10"]), ts)
                sent += 1
            elif kind in ("close", "partial_close"):
                amount = ev["size_closed_usdc"]
                if kind == "close":  # whatever the mock still holds at that index
                    amount = fn.openTrades(trader, pair, index).call()[3]
                self._at(ts)
                receipt = self.chain.send_as(fn.closeTradeMarket(pair, index, amount), trader)
                self._keeper(fn.executeMarketOrder(self.chain.order_id(receipt), ev["price_e10"]), ts)
                sent += 2
            if progress:
                progress(n + 1, events.height)
        return sent


def replay_to_node(
    rpc_url: str, events: pl.DataFrame, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Deploy the mock on a local anvil node (keeper = anvil's first default account) and replay."""
    from infra.chain.anvil import DEFAULT_KEYS
    from infra.chain.contracts import deploy

    chain = deploy(rpc_url, DEFAULT_KEYS[0])
    sent = Replayer(chain).replay(events, progress)
    return {"trading": chain.trading.address, "usdc": chain.usdc.address, "transactions": sent}
