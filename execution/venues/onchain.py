"""The on-chain venue: a follower's trades on Avantis (v1.5 function shapes), sent by our delegate
as `delegatedAction(follower, calldata)` after the follower called `setDelegate(ours)`. The
delegate can trade for the follower, never withdraw.

Exactly once on chain rests on the venue's own record, `onchain_txs`, keyed by our intent id: a
transaction is signed, stored with its nonce and raw bytes in PostgreSQL, and only then
broadcast. Asked again about the same intent (after a crash or a timeout), the venue never signs
a second transaction: it re-broadcasts the stored bytes (a no-op once mined; the same nonce, so
they execute at most once) and reads the outcome from the chain. Nonces come from one row per
delegate taken FOR UPDATE, so engines sharing a key never collide; a nonce signed but never
broadcast (a crash in between) would stall every later one, so a wait that stalls re-broadcasts
the delegate's stored, unsettled transactions from the chain's nonce up.

Every order is first run as an `eth_call`: a call that would revert (no delegation, no allowance,
below the minimum position) is rejected with the contract's reason and costs no nonce and no gas.
Gas is capped twice: a fixed gas limit per transaction and a ceiling on the fee per gas; above
the ceiling nothing is sent.

Market orders take two steps on Avantis: our transaction places the order (MarketOrderInitiated),
a keeper fills it (MarketExecuted) or cancels it (MarketOpenCanceled, e.g. the fill would be past
the order's slippage bound). The venue waits for the second step up to `fill_timeout_s`; past it
`VenuePending` leaves the intent unknown to the engine, and a later lookup reads the outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import eth_abi
from eth_account import Account
from eth_utils import to_checksum_address

from data.events import Side
from data.protocol.abi import EVENTS, TRADE_FIELDS, TRADE_TYPE, encode_call
from data.protocol.decode import DecodeError, Registry
from data.sources.chain.rpc import ChainRpc, RpcError
from data.units import from_e10, to_e10
from execution.copy.model import CopyAction
from execution.venues.base import OrderStatus, VenueName, VenueOrder, VenuePending, VenuePosition, VenueResult
from infra.logs import log_fields
from infra.metrics import counter

log = logging.getLogger("vanta.venue.onchain")

TXS = counter("vanta_onchain_txs_total", "Delegate transactions by outcome", ("outcome",))

_ALREADY_SENT = ("already known", "nonce too low", "already imported", "replacement transaction underpriced")
# topic0 of the v1.5 events the venue reads back (the shapes the mock and this ABI speak).
TOPICS = {a.name: a.topic0 for a in EVENTS if a.version == "1.5"}


class GasAboveCap(RuntimeError):
    """The chain's fee per gas is above the configured ceiling: nothing is sent."""


def position_ref(pair_index: int, index: int) -> str:
    return f"{pair_index}:{index}"


def _parse_ref(ref: str | None) -> tuple[int, int]:
    pair, _, index = (ref or "").partition(":")
    if not (pair.isdigit() and index.isdigit()):
        raise ValueError(f"not an on-chain position reference: {ref!r}")
    return int(pair), int(index)


def _revert_reason(exc: RpcError) -> str:
    text = str(exc)
    marker = "execution reverted"
    return text[text.index(marker) :] if marker in text else text


@dataclass(frozen=True)
class OnchainConfig:
    trading_address: str
    chain_id: int
    gas_limit: int = 1_500_000  # per transaction: a call needing more fails its pre-flight
    max_fee_per_gas_wei: int = 50 * 10**9  # nothing is sent while the base fee is above this
    priority_fee_wei: int = 10**6
    execution_fee_wei: int | None = None  # None: read `executionFee()` from the contract
    fill_timeout_s: float = 30.0
    poll_s: float = 0.05


@dataclass
class _Pending:
    client_ref: str
    action: str
    tx_hash: str
    requested: int
    pair_index: int
    block: int | None = None
    order_id: int | None = None
    result: VenueResult | None = None


class OnchainVenue:
    name = VenueName.ONCHAIN

    def __init__(
        self,
        pool: asyncpg.Pool,
        rpc: ChainRpc,
        delegate_key: str,
        config: OnchainConfig,
        pairs: list[int] | None = None,
    ):
        self.pool = pool
        self.rpc = rpc
        self.config = config
        self._signer = Account.from_key(delegate_key)  # the key lives only inside the signer
        self.delegate = self._signer.address
        self.trading = to_checksum_address(config.trading_address)
        self.pairs = pairs if pairs is not None else [0, 1, 2]
        self._registry = Registry()
        self._execution_fee: int | None = config.execution_fee_wei

    async def close(self) -> None:
        await self.rpc.close()

    # --- reads --------------------------------------------------------------------------------

    async def _call(self, data: bytes, *, sender: str | None = None, value: int = 0) -> bytes:
        gas = self.config.gas_limit if sender is not None else None
        return await self.rpc.eth_call(self.trading, data, sender=sender, value=value, gas=gas)

    async def execution_fee(self) -> int:
        if self._execution_fee is None:
            raw = await self._call(encode_call("executionFee", [], []))
            self._execution_fee = int.from_bytes(raw[:32], "big")
        return self._execution_fee

    async def _trade(self, account: str, pair_index: int, index: int) -> dict[str, Any]:
        raw = await self._call(
            encode_call("openTrades", ["address", "uint256", "uint256"], [account, pair_index, index])
        )
        values = eth_abi.decode([t for _, t in TRADE_FIELDS], raw)
        return dict(zip([name for name, _ in TRADE_FIELDS], values, strict=True))

    async def open_positions(self, account: str) -> list[VenuePosition]:
        """The follower's open trades, read from the contract (pair by pair, index by index)."""
        account = to_checksum_address(account)
        counts = await asyncio.gather(
            *(self._call(encode_call("openCount", ["address", "uint256"], [account, p])) for p in self.pairs)
        )
        positions = []
        for pair, raw in zip(self.pairs, counts, strict=True):
            count, index = int.from_bytes(raw[:32], "big"), 0
            found = 0
            while found < count and index < 256:
                t = await self._trade(account, pair, index)
                if t["leverage"] > 0:
                    found += 1
                    positions.append(
                        VenuePosition(
                            position_ref(pair, index),
                            pair,
                            Side.LONG if t["buy"] else Side.SHORT,
                            t["initialPosToken"],
                            from_e10(t["leverage"]),
                            from_e10(t["openPrice"]),
                        )
                    )
                index += 1
        return positions

    # --- building orders ----------------------------------------------------------------------

    async def _inner_call(self, order: VenueOrder) -> tuple[bytes, int, int]:
        """The follower's own call (what `delegatedAction` runs as them), its msg.value, and the
        collateral it asks for or closes."""
        account = to_checksum_address(order.account)
        if order.action is CopyAction.OPEN:
            assert order.side is not None and order.leverage is not None
            expected = to_e10(order.reference_price, exact=False) if order.reference_price else 0
            trade = (
                account,
                order.pair_index,
                0,
                order.collateral_usdc,
                0,
                expected,
                order.side is Side.LONG,
                to_e10(order.leverage, exact=False),
                to_e10(order.tp, exact=False) if order.tp else 0,
                to_e10(order.sl, exact=False) if order.sl else 0,
                0,
            )
            slippage_p = max(1, order.max_slippage_bps * 10**8)  # bps → percent ×1e10
            call = encode_call("openTrade", [TRADE_TYPE, "uint8", "uint256"], [trade, 0, slippage_p])
            return call, await self.execution_fee(), order.collateral_usdc
        pair, index = _parse_ref(order.position_ref)
        current = await self._trade(account, pair, index)
        if current["leverage"] == 0:
            raise LookupError("no such open position on chain")
        if order.action is CopyAction.UPDATE_TP_SL:
            tp = to_e10(order.tp, exact=False) if order.tp is not None else current["tp"]
            sl = to_e10(order.sl, exact=False) if order.sl is not None else current["sl"]
            call = encode_call(
                "updateTpAndSl",
                ["uint256", "uint256", "uint256", "uint256", "bytes[]"],
                [pair, index, sl, tp, []],
            )
            return call, 0, 0
        # A full close takes whatever is there; a partial one never more than that.
        amount = current["initialPosToken"]
        if order.action is CopyAction.PARTIAL_CLOSE:
            amount = min(order.collateral_usdc, amount)
        call = encode_call("closeTradeMarket", ["uint256", "uint256", "uint256"], [pair, index, amount])
        return call, await self.execution_fee(), amount

    async def _fees(self) -> tuple[int, int]:
        block = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
        base = int(block.get("baseFeePerGas") or "0x0", 16)
        tip = self.config.priority_fee_wei
        if base + tip > self.config.max_fee_per_gas_wei:
            raise GasAboveCap(
                f"base fee {base} wei + tip {tip} is above the cap {self.config.max_fee_per_gas_wei}"
            )
        return min(2 * base + tip, self.config.max_fee_per_gas_wei), tip

    # --- sending ------------------------------------------------------------------------------

    async def submit_many(self, orders: list[VenueOrder]) -> list[VenueResult]:
        refs = [o.client_ref for o in orders]
        stored = {
            r["client_ref"]: r
            for r in await self.pool.fetch(
                "SELECT * FROM onchain_txs WHERE client_ref = ANY($1::text[])", refs
            )
        }
        results: dict[str, VenueResult] = {}
        fresh = [o for o in orders if o.client_ref not in stored]
        built: list[tuple[VenueOrder, bytes, int, int]] = []
        if fresh:
            try:
                max_fee, tip = await self._fees()
            except GasAboveCap as exc:
                for o in fresh:
                    results[o.client_ref] = VenueResult(o.client_ref, OrderStatus.REJECTED, reason=str(exc))
                fresh = []
            checks = await asyncio.gather(*(self._preflight(o) for o in fresh))
            for o, check in zip(fresh, checks, strict=True):
                if isinstance(check, VenueResult):
                    results[o.client_ref] = check
                else:
                    built.append((o, *check))
        if built:
            stored |= await self._sign_and_store(built, max_fee, tip)
        unsettled = [r for r in stored.values() if r["outcome"] is None]
        for r in stored.values():
            if r["outcome"] is not None:
                results[r["client_ref"]] = VenueResult.from_json(r["outcome"])
        if unsettled:
            await self._broadcast([r["raw_tx"] for r in sorted(unsettled, key=lambda r: r["nonce"])])
            results |= await self._settle(unsettled)
        return [results[o.client_ref] for o in orders]

    async def _preflight(self, order: VenueOrder) -> tuple[bytes, int, int] | VenueResult:
        """Build the order and run it as an eth_call from our delegate: a revert is a rejection
        with the contract's reason, before any nonce or gas is spent."""
        try:
            inner, value, amount = await self._inner_call(order)
        except (LookupError, ValueError) as exc:
            return VenueResult(order.client_ref, OrderStatus.REJECTED, reason=str(exc))
        outer = encode_call(
            "delegatedAction", ["address", "bytes"], [to_checksum_address(order.account), inner]
        )
        try:
            await self._call(outer, sender=self.delegate, value=value)
        except RpcError as exc:
            TXS.labels(outcome="refused_preflight").inc()
            return VenueResult(order.client_ref, OrderStatus.REJECTED, reason=_revert_reason(exc))
        return outer, value, amount

    async def _sign_and_store(
        self, built: list[tuple[VenueOrder, bytes, int, int]], max_fee: int, tip: int
    ) -> dict[str, asyncpg.Record]:
        """Take consecutive nonces, sign, and store the signed bytes in one transaction: nothing
        is broadcast that is not stored first."""
        chain_nonce = int(await self.rpc.call("eth_getTransactionCount", [self.delegate, "pending"]), 16)
        n = len(built)
        async with self.pool.acquire() as conn, conn.transaction():
            first = await conn.fetchval(
                "INSERT INTO onchain_nonces (delegate, next_nonce) VALUES ($1, $2::bigint + $3::bigint) "
                "ON CONFLICT (delegate) DO UPDATE SET next_nonce = greatest(onchain_nonces.next_nonce, $2) + $3 "
                "RETURNING next_nonce - $3",
                self.delegate,
                chain_nonce,
                n,
            )
            rows = []
            for k, (order, data, value, amount) in enumerate(built):
                signed = self._signer.sign_transaction(
                    {
                        "type": 2,
                        "chainId": self.config.chain_id,
                        "nonce": first + k,
                        "to": self.trading,
                        "data": data,
                        "value": value,
                        "gas": self.config.gas_limit,
                        "maxFeePerGas": max_fee,
                        "maxPriorityFeePerGas": tip,
                    }
                )
                rows.append(
                    (
                        order.client_ref,
                        order.account,
                        self.delegate,
                        first + k,
                        "0x" + signed.hash.hex().removeprefix("0x"),
                        bytes(signed.raw_transaction),
                        order.action,
                        order.pair_index,
                        amount,
                    )
                )
            await conn.executemany(
                "INSERT INTO onchain_txs (client_ref, account, delegate, nonce, tx_hash, raw_tx, action, "
                "pair_index, requested) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
                rows,
            )
            stored = await conn.fetch(
                "SELECT * FROM onchain_txs WHERE client_ref = ANY($1::text[])", [r[0] for r in rows]
            )
        return {r["client_ref"]: r for r in stored}

    async def _broadcast(self, raws: list[bytes]) -> None:
        for raw in raws:
            try:
                await self.rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
            except RpcError as exc:
                if not any(m in str(exc).lower() for m in _ALREADY_SENT):
                    log.warning("broadcast refused", extra=log_fields(error=str(exc)[:200]))

    async def _rebroadcast_stalled(self) -> None:
        """Re-send every stored, unsettled transaction of ours from the chain's nonce up: one that
        a crashed engine stored but never broadcast would otherwise block all later nonces."""
        chain_nonce = int(await self.rpc.call("eth_getTransactionCount", [self.delegate, "latest"]), 16)
        rows = await self.pool.fetch(
            "SELECT raw_tx FROM onchain_txs WHERE delegate = $1 AND outcome IS NULL AND nonce >= $2 ORDER BY nonce",
            self.delegate,
            chain_nonce,
        )
        if rows:
            log.info(
                "re-broadcasting stalled transactions",
                extra=log_fields(count=len(rows), from_nonce=chain_nonce),
            )
            await self._broadcast([r["raw_tx"] for r in rows])

    # --- settling -----------------------------------------------------------------------------

    async def _settle(self, rows: list[asyncpg.Record]) -> dict[str, VenueResult]:
        """Wait for each stored transaction's receipt and, for market orders, the keeper's fill
        or cancel; store and return the outcomes. Raises `VenuePending` if any is still open."""
        pending = {
            r["tx_hash"]: _Pending(
                r["client_ref"], r["action"], r["tx_hash"], r["requested"], r["pair_index"]
            )
            for r in rows
        }
        by_order: dict[int, _Pending] = {}
        fees_by_tx: dict[str, int] = {}
        scan_from: int | None = None
        started = time.monotonic()
        stalled_at = started + 1.0
        while True:
            waiting = [p for p in pending.values() if p.block is None]
            receipts = await asyncio.gather(
                *(self.rpc.call("eth_getTransactionReceipt", [p.tx_hash]) for p in waiting)
            )
            for p, receipt in zip(waiting, receipts, strict=True):
                if receipt is not None:
                    self._on_receipt(p, receipt, by_order)
                    if scan_from is not None and p.block is not None:
                        # A fill may lie in blocks scanned before this receipt was seen.
                        scan_from = min(scan_from, p.block)
            mined = [p.block for p in pending.values() if p.block is not None and p.result is None]
            if by_order and mined:
                head = int(await self.rpc.call("eth_blockNumber", []), 16)
                start = min(mined) if scan_from is None else scan_from
                if start <= head:
                    await self._scan(start, head, by_order, fees_by_tx)
                    scan_from = head + 1
            done = [p for p in pending.values() if p.result is not None]
            if len(done) == len(pending):
                break
            now = time.monotonic()
            if now > started + self.config.fill_timeout_s:
                await self._store_outcomes(done)
                open_refs = [p.client_ref for p in pending.values() if p.result is None]
                raise VenuePending(
                    f"{len(open_refs)} on-chain orders not settled after {self.config.fill_timeout_s} s"
                )
            if waiting and now > stalled_at:
                await self._rebroadcast_stalled()
                stalled_at = now + 2.0
            await asyncio.sleep(self.config.poll_s)
        await self._store_outcomes(done)
        return {p.client_ref: p.result for p in done if p.result is not None}

    def _on_receipt(self, p: _Pending, receipt: dict[str, Any], by_order: dict[int, _Pending]) -> None:
        p.block = int(receipt["blockNumber"], 16)
        if int(receipt["status"], 16) != 1:
            TXS.labels(outcome="reverted").inc()
            p.result = VenueResult(p.client_ref, OrderStatus.REJECTED, reason="reverted on chain")
            return
        TXS.labels(outcome="mined").inc()
        if p.action == CopyAction.UPDATE_TP_SL:
            p.result = VenueResult(p.client_ref, OrderStatus.FILLED)
            return
        for lg in receipt["logs"]:
            if lg["topics"] and lg["topics"][0] == TOPICS["MarketOrderInitiated"]:
                fields = self._decode(lg)
                p.order_id = int(fields["orderId"])
                by_order[p.order_id] = p
                return
        p.result = VenueResult(
            p.client_ref, OrderStatus.REJECTED, reason="no order placed by the transaction"
        )

    def _decode(self, lg: dict[str, Any]) -> dict[str, Any]:
        return self._registry.decode(
            [bytes.fromhex(t[2:]) for t in lg["topics"]], bytes.fromhex(lg["data"][2:])
        ).fields

    async def _scan(
        self, start: int, stop: int, by_order: dict[int, _Pending], fees_by_tx: dict[str, int]
    ) -> None:
        topics = [[TOPICS[n] for n in ("MarketExecuted", "MarketOpenCanceled", "FeesCharged")]]
        logs = await self.rpc.call(
            "eth_getLogs",
            [{"fromBlock": hex(start), "toBlock": hex(stop), "address": [self.trading], "topics": topics}],
        )
        for lg in logs:
            try:
                fields = self._decode(lg)
            except DecodeError:
                continue  # another contract version's shape: not one of our orders' outcomes
            topic = lg["topics"][0]
            if topic == TOPICS["FeesCharged"]:
                fees_by_tx[lg["transactionHash"]] = int(fields["closingFee"])
                continue
            p = by_order.get(int(fields["orderId"]))
            if p is None or p.result is not None:
                continue
            if topic == TOPICS["MarketOpenCanceled"]:
                p.result = VenueResult(
                    p.client_ref, OrderStatus.REJECTED, reason="canceled by the keeper (price or liquidity)"
                )
                continue
            t = fields["t"]
            price = from_e10(int(fields["price"]))
            ref = position_ref(int(t["pairIndex"]), int(t["index"]))
            if fields["open"]:
                collateral = int(t["initialPosToken"])
                p.result = VenueResult(
                    p.client_ref,
                    OrderStatus.FILLED,
                    price,
                    collateral,
                    p.requested - collateral,
                    position_ref=ref,
                )
            else:
                closed = int(fields["positionSizeUSDC"])
                sent = int(fields["usdcSentToTrader"])
                p.result = VenueResult(
                    p.client_ref,
                    OrderStatus.FILLED,
                    price,
                    closed,
                    fees_by_tx.get(lg["transactionHash"], 0),
                    usdc_sent=sent,
                    pnl_usdc=sent - closed,
                    position_ref=ref,
                )

    async def _store_outcomes(self, done: list[_Pending]) -> None:
        if done:
            await self.pool.executemany(
                "UPDATE onchain_txs SET outcome = $2::jsonb WHERE client_ref = $1 AND outcome IS NULL",
                [(p.client_ref, p.result.to_json()) for p in done if p.result is not None],
            )

    async def lookup(self, client_refs: list[str]) -> dict[str, VenueResult]:
        """Outcomes of intents this venue signed a transaction for; an intent absent from the
        answer was never signed, so sending it is its first send."""
        rows = await self.pool.fetch(
            "SELECT * FROM onchain_txs WHERE client_ref = ANY($1::text[])", client_refs
        )
        results = {
            r["client_ref"]: VenueResult.from_json(r["outcome"]) for r in rows if r["outcome"] is not None
        }
        unsettled = [r for r in rows if r["outcome"] is None]
        if unsettled:
            await self._broadcast([r["raw_tx"] for r in sorted(unsettled, key=lambda r: r["nonce"])])
            results |= await self._settle(unsettled)
        return results
