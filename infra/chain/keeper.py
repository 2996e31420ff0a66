"""A keeper for the local Avantis mock: fills pending market orders the way Avantis' keepers do,
at the price its feed gives when it sees them, from a thread of its own. Tests and the demo run it
beside the copy engine so an order our delegate places is filled (or canceled past its slippage
bound by the contract) without anyone stepping in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from web3 import Web3

from infra.chain.contracts import LocalAvantis

log = logging.getLogger("vanta.keeper")


class Keeper:
    def __init__(
        self,
        chain: LocalAvantis,
        price_e10: Callable[[int], int],
        *,
        traders: set[str] | None = None,
        poll_s: float = 0.02,
        from_block: int = 0,
    ):
        # Its own connection: the caller's web3 keeps being used from the caller's thread.
        self.w3 = Web3(Web3.HTTPProvider(chain.w3.provider.endpoint_uri, request_kwargs={"timeout": 30}))  # type: ignore[attr-defined]
        self.trading = self.w3.eth.contract(address=chain.trading.address, abi=chain.trading.abi)
        self.keeper = chain.keeper
        self.price_e10 = price_e10
        self.traders = {t.lower() for t in traders} if traders is not None else None
        self.poll_s = poll_s
        self.filled = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keeper", daemon=True)
        self._next_block = from_block  # orders placed before it started are still pending

    def __enter__(self) -> Keeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        event = self.trading.events.MarketOrderInitiated()
        while not self._stop.wait(self.poll_s):
            try:
                head = self.w3.eth.block_number
                if head < self._next_block:
                    continue
                logs = event.get_logs(from_block=self._next_block, to_block=head)
                self._next_block = head + 1
                for lg in logs:
                    args = lg["args"]
                    if self.traders is not None and args["trader"].lower() not in self.traders:
                        continue
                    self._fill(int(args["orderId"]), int(args["pairIndex"]))
            except Exception as exc:  # a keeper outage is what the venue's timeouts are for
                self.errors.append(f"{type(exc).__name__}: {exc}")
                log.warning("keeper round failed", exc_info=True)

    def _fill(self, order_id: int, pair_index: int) -> None:
        if not self.trading.functions.orders(order_id).call()[5]:  # `live`: filled or canceled already
            return
        tx = self.trading.functions.executeMarketOrder(order_id, self.price_e10(pair_index)).transact(
            {"from": self.keeper, "gas": 1_500_000}
        )
        receipt = self.w3.eth.wait_for_transaction_receipt(tx, timeout=30)
        if receipt["status"] != 1:
            raise RuntimeError(f"executeMarketOrder({order_id}) reverted")
        self.filled += 1
