"""Replay canonical events as real transactions on the local-chain mock (anvil only).

Simulated traders have no keys: anvil impersonates their addresses. Each open mints the deposit
in mock USDC, approves, calls `openTrade` and has the keeper execute it at the event's price;
closes call `closeTradeMarket` (or the keeper's `executeLimit` for TP, SL and liquidation). Block
timestamps follow the events' times, so the indexer sees the activity as it would see mainnet.
The mock charges the same 0.045 % fees but no rollover or loss protection, so on-chain payouts
match the simulation's only where those are zero. `replay_with_outcomes` replays recorded closes
(real ones from the history API) with the outcome they record, so the chain carries mainnet's
numbers exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import polars as pl
from web3.logs import DISCARD

from data.events import EventKind, Side, TradeEvent, position_key
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


def _deposit_for(collateral: int, leverage_e10: int) -> int:
    """The deposit from which the mock's opening fee (0.045 % of the notional, truncated twice as
    the contract does) leaves exactly `collateral` as `initialPosToken`."""

    def after_fee(deposit: int) -> int:
        return deposit - deposit * leverage_e10 // 10**10 * 450 // 10**6

    deposit = collateral * 10**16 // (10**16 - leverage_e10 * 450)
    while after_fee(deposit) < collateral:
        deposit += 1
    while after_fee(deposit) > collateral:
        deposit -= 1
    if after_fee(deposit) != collateral:
        raise ValueError(f"no deposit leaves {collateral} after the opening fee at leverage {leverage_e10}")
    return deposit


def _e10(value: Any, what: str) -> int:
    scaled = Decimal(value).scaleb(10)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{what} {value} has more than 10 decimals: the contracts cannot carry it")
    return int(scaled)


@dataclass(frozen=True)
class ReplayedPosition:
    position_key: str  # the position's key on the chain (trade index and open time as mined)
    deposit_usdc: int  # what the trader paid in; minus the opening fee it is the collateral


def replay_with_outcomes(chain: LocalAvantis, events: list[TradeEvent]) -> dict[str, ReplayedPosition]:
    """Replay canonical opens and closes (real closed trades from the history API, say) on the
    mock, each close executed with the outcome the event records (percent profit, closing fee,
    rollover, USDC sent) instead of the mock's own arithmetic, so the chain carries mainnet's
    numbers. Opens pay the mock's opening fee on top of the recorded collateral. Returns, per
    position key of the events, the key the chain gave the position and the deposit made."""
    fn, usdc = chain.trading.functions, chain.usdc.functions
    w3 = chain.w3
    ordered = sorted(events, key=lambda e: (e.ts, e.kind is not EventKind.OPEN, e.event_id))
    head_ts = int(w3.eth.get_block("latest")["timestamp"])
    if ordered and ordered[0].ts <= head_ts:
        raise ValueError(f"the node's head (t={head_ts}) is not before the first event (t={ordered[0].ts})")
    last_ts = head_ts

    def at(ts: int) -> None:
        nonlocal last_ts
        last_ts = max(ts, last_ts + 1)  # blocks need strictly increasing timestamps
        chain.rpc("evm_setNextBlockTimestamp", [last_ts])

    opens = [e for e in ordered if e.kind is EventKind.OPEN]
    deposits = {
        e.position_key: _deposit_for(e.collateral_usdc or 0, _e10(e.leverage, "leverage")) for e in opens
    }
    paid_out = sum(e.usdc_sent or 0 for e in ordered if e.is_close)
    chain.send_as(usdc.mint(chain.trading.address, paid_out + 1), chain.keeper)
    for trader in sorted({e.trader for e in opens}):
        addr = chain.impersonate(trader)
        need = sum(deposits[e.position_key] for e in opens if e.trader == trader)
        chain.send_as(usdc.mint(addr, need), chain.keeper)
        chain.send_as(usdc.approve(chain.trading.address, need), addr)

    where: dict[str, ReplayedPosition] = {}
    placed: dict[str, tuple[str, int, int]] = {}
    for ev in ordered:
        trader = w3.to_checksum_address(ev.trader)
        price = _e10(ev.price, "price")
        if ev.kind is EventKind.OPEN:
            trade = (
                trader,
                ev.pair_index,
                0,
                deposits[ev.position_key],
                0,
                price,
                ev.side is Side.LONG,
                _e10(ev.leverage, "leverage"),
                _e10(ev.tp or 0, "tp"),
                _e10(ev.sl or 0, "sl"),
                0,
            )
            at(ev.ts)
            receipt = chain.send_as(fn.openTrade(trade, 0, 10**10), trader)
            at(ev.ts)
            executed = chain.send_as(fn.executeMarketOrder(chain.order_id(receipt), price), chain.keeper)
            t = chain.trading.events.MarketExecuted().process_receipt(executed, errors=DISCARD)[0]["args"][
                "t"
            ]
            placed[ev.position_key] = (trader, int(t["index"]), int(t["timestamp"]))
            where[ev.position_key] = ReplayedPosition(
                position_key(ev.trader, ev.pair_index, int(t["index"]), int(t["timestamp"])),
                deposits[ev.position_key],
            )
        elif ev.is_close:
            _trader, index, _ts = placed[ev.position_key]
            size = ev.size_closed_usdc or 0
            gross = ev.gross_pnl_usdc or 0
            # percentProfit (x1e10 %) such that size * pct / 1e12 is the recorded gross.
            pct = (gross * 10**12 + (size // 2 if gross >= 0 else -(size // 2))) // size if size else 0
            outcome = (
                pct,
                ev.close_fee_usdc,
                ev.rollover_fee_usdc,
                ev.loss_protection_usdc,
                ev.usdc_sent or 0,
            )
            at(ev.ts)
            if ev.kind in LIMIT_TYPES:
                chain.send_as(
                    fn.executeLimitWithOutcome(
                        trader, ev.pair_index, index, LIMIT_TYPES[ev.kind], price, outcome
                    ),
                    chain.keeper,
                )
            else:
                receipt = chain.send_as(fn.closeTradeMarket(ev.pair_index, index, size), trader)
                at(ev.ts)
                chain.send_as(
                    fn.executeMarketOrderWithOutcome(chain.order_id(receipt), price, outcome), chain.keeper
                )
    return where
