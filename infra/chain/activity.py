"""Random but reproducible trading on the local Avantis mock, for tests and benchmarks.

Traders (impersonated addresses) open (paying the opening fee), add margin, partially close,
close, move TP/SL (directly, or every other stop loss through the oracle's SL update) and get
their market opens canceled; the keeper executes orders at a per-pair random-walk price and
fires TP, SL and liquidations. Every kind of event the indexer must decode is produced, through
the contracts' real functions, so the logs are exactly what the node emits.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from web3.logs import DISCARD

from infra.chain.contracts import LocalAvantis

E10 = 10**10
USDC = 10**6
START_PRICES = {0: 3_000 * E10, 1: 60_000 * E10}  # ETH/USD, BTC/USD in the mock's pair indexes


@dataclass
class Activity:
    chain: LocalAvantis
    seed: int = 0
    traders: int = 8
    rng: random.Random = field(init=False)
    addresses: list[str] = field(init=False, default_factory=list)
    prices: dict[int, int] = field(init=False)
    open_positions: list[tuple[str, int, int]] = field(init=False, default_factory=list)
    done: Counter[str] = field(init=False, default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.prices = dict(START_PRICES)
        for i in range(self.traders):
            self.addresses.append(
                self.chain.funded_trader(f"vanta-activity:{self.seed}:{i}", 10_000_000 * USDC)
            )

    def _move_prices(self) -> None:
        for pair, price in self.prices.items():
            self.prices[pair] = price * (1000 + self.rng.randint(-8, 8)) // 1000

    def _execute(self, receipt: dict) -> dict:
        fn = self.chain.trading.functions
        return self.chain.send_as(
            fn.executeMarketOrder(self.chain.order_id(receipt), self.prices[self._pair]), self.chain.keeper
        )

    def open(self) -> None:
        trader = self.rng.choice(self.addresses)
        self._pair = pair = self.rng.choice(list(self.prices))
        collateral = self.rng.randint(50, 2_000) * USDC
        leverage = self.rng.choice([2, 5, 10, 20, 25])
        buy = self.rng.random() < 0.5
        tp = self.prices[pair] * (11 if buy else 9) // 10 if self.rng.random() < 0.4 else 0
        trade = (trader, pair, 0, collateral, 0, 0, buy, leverage * E10, tp, 0, 0)
        receipt = self.chain.send_as(self.chain.trading.functions.openTrade(trade, 0, 10**10), trader)
        if self.rng.random() < 0.08:  # the keeper cannot fill it: the order is canceled and refunded
            self.chain.send_as(
                self.chain.trading.functions.cancelMarketOrder(self.chain.order_id(receipt)),
                self.chain.keeper,
            )
            self.done["cancel"] += 1
            return
        executed = self._execute(receipt)
        index = self.chain.trading.events.MarketExecuted().process_receipt(executed, errors=DISCARD)[0][
            "args"
        ]
        self.open_positions.append((trader, pair, int(index["t"]["index"])))
        self.done["open"] += 1

    def act(self) -> str:
        """One action; returns its name. Opens dominate while few positions are open."""
        self._move_prices()
        if len(self.open_positions) < 3 or self.rng.random() < 0.3:
            self.open()
            return "open"
        fn = self.chain.trading.functions
        position = self.rng.choice(self.open_positions)
        trader, pair, index = position
        self._pair = pair
        collateral = int(fn.openTrades(trader, pair, index).call()[3])
        roll = self.rng.random()
        if roll < 0.12:
            self.chain.send_as(fn.updateMargin(pair, index, 0, collateral // 4 + USDC, []), trader)
            kind = "add_margin"
        elif roll < 0.22:
            new_tp = self.prices[pair] * self.rng.choice([9, 11]) // 10
            self.chain.send_as(fn.updateTp(pair, index, new_tp), trader)
            kind = "tp_update"
        elif roll < 0.30:
            new_sl = self.prices[pair] * 95 // 100
            if self.done["sl_update"] % 2 == 0:  # every other one through the oracle: Callbacks' SlUpdated
                receipt = self.chain.send_as(fn.requestSlUpdate(pair, index, new_sl), trader)
                order = self.chain.trading.events.SlUpdateInitiated().process_receipt(receipt, errors=DISCARD)
                self.chain.send_as(fn.executeSlUpdate(int(order[0]["args"]["orderId"])), self.chain.keeper)
            else:
                self.chain.send_as(fn.updateSl(pair, index, new_sl), trader)
            kind = "sl_update"
        elif roll < 0.50 and collateral > 20 * USDC:
            amount = collateral * self.rng.randint(20, 60) // 100
            self._execute(self.chain.send_as(fn.closeTradeMarket(pair, index, amount), trader))
            kind = "partial_close"
            if fn.openTrades(trader, pair, index).call()[7] == 0:  # the loss closed all of it
                self.open_positions.remove(position)
        else:
            limit = self.rng.random()
            if limit < 0.55:
                self._execute(self.chain.send_as(fn.closeTradeMarket(pair, index, collateral), trader))
                kind = "close"
            else:
                order_type = 0 if limit < 0.7 else (1 if limit < 0.85 else 2)
                price = self.prices[pair]
                if order_type == 2:  # far enough against the position to wipe out 90 % of it
                    buy = bool(fn.openTrades(trader, pair, index).call()[6])
                    price = price * (5 if buy else 15) // 10
                self.chain.send_as(fn.executeLimit(trader, pair, index, order_type, price), self.chain.keeper)
                kind = ("tp", "sl", "liquidation")[order_type]
            self.open_positions.remove(position)
        self.done[kind] += 1
        return kind

    def run(self, actions: int) -> Counter[str]:
        for _ in range(actions):
            self.act()
        return self.done
