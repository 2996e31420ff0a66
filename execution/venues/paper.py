"""The paper venue: fills at the feed's price with the pair's fees and a spread, after a
configurable latency; rejections and partial fills can be switched on. Its books live in
PostgreSQL (`paper_orders`, `paper_positions`), apart from the engine's journal, so tests check
exactly-once on the venue's side and a crash of the engine loses nothing the venue did.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

import asyncpg

from data.events import Side
from data.pairs import Pair
from data.units import to_e10
from execution.copy.model import CopyAction
from execution.venues.base import OrderStatus, PriceFeed, VenueName, VenueOrder, VenuePosition, VenueResult
from research.pnl import close_outcome, open_fee

PRICE_STEP = Decimal("0.0000000001")


@dataclass
class PaperVenue:
    pool: asyncpg.Pool
    catalogue: dict[int, Pair]
    feed: PriceFeed
    spread_bps: int = 2
    latency_ms: int = 0
    reject_ppm: int = 0  # share of orders the venue rejects, decided by the order's hash
    partial_fill_pct: int = 100  # opens fill this percent of the asked collateral
    name: VenueName = VenueName.PAPER

    def _fill_price(self, pair_index: int, buy: bool) -> Decimal | None:
        mid = self.feed.price(pair_index)
        if mid is None:
            return None
        half = mid * self.spread_bps / 20_000
        return (mid + half if buy else mid - half).quantize(PRICE_STEP, rounding=ROUND_FLOOR)

    def _rejects(self, client_ref: str) -> bool:
        return int(hashlib.sha256(client_ref.encode()).hexdigest()[:8], 16) % 1_000_000 < self.reject_ppm

    async def submit_many(self, orders: list[VenueOrder]) -> list[VenueResult]:
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        results: list[VenueResult] = []
        async with self.pool.acquire() as conn, conn.transaction():
            rows = []
            for order in orders:
                result = await self._execute(conn, order)
                results.append(result)
                rows.append(
                    (
                        order.client_ref,
                        order.account,
                        order.action,
                        order.pair_index,
                        order.side.value if order.side else None,
                        result.collateral_usdc,
                        order.leverage,
                        result.price,
                        result.fee_usdc,
                        result.usdc_sent,
                        result.pnl_usdc,
                        result.position_ref,
                        result.status,
                        result.reason,
                    )
                )
            await conn.executemany(
                "INSERT INTO paper_orders (client_ref, account, action, pair_index, side, collateral_usdc, "
                "leverage, price, fee_usdc, usdc_sent, pnl_usdc, position_ref, status, reason) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
                rows,
            )
        return results

    async def _execute(self, conn: asyncpg.Connection, order: VenueOrder) -> VenueResult:
        reject = lambda reason: VenueResult(order.client_ref, OrderStatus.REJECTED, reason=reason)  # noqa: E731
        if self._rejects(order.client_ref):
            return reject("venue rejected the order")
        pair = self.catalogue.get(order.pair_index)
        if pair is None:
            return reject("unknown pair")
        if order.action is CopyAction.OPEN:
            assert order.side is not None and order.leverage is not None
            price = self._fill_price(order.pair_index, order.side is Side.LONG)
            if price is None:
                return reject("no price")
            if order.reference_price and abs(price - order.reference_price) * 10_000 > (
                order.max_slippage_bps * order.reference_price
            ):
                return reject("price moved past the slippage bound")
            collateral = order.collateral_usdc * self.partial_fill_pct // 100
            fee = open_fee(collateral, to_e10(order.leverage), pair.open_fee_ppm)
            if collateral - fee <= 0:
                return reject("below venue minimum")
            await conn.execute(
                "INSERT INTO paper_positions (position_ref, account, pair_index, side, collateral_usdc, "
                "leverage, entry_price, tp, sl) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
                order.client_ref,
                order.account,
                order.pair_index,
                order.side.value,
                collateral - fee,
                order.leverage,
                price,
                order.tp,
                order.sl,
            )
            return VenueResult(
                order.client_ref,
                OrderStatus.FILLED,
                price,
                collateral - fee,
                fee,
                position_ref=order.client_ref,
            )
        pos = await conn.fetchrow(
            "SELECT * FROM paper_positions WHERE position_ref = $1 AND account = $2 AND status = 'open' FOR UPDATE",
            order.position_ref,
            order.account,
        )
        if pos is None:
            return reject("no such open position")
        if order.action is CopyAction.UPDATE_TP_SL:
            await conn.execute(
                "UPDATE paper_positions SET tp = coalesce($2, tp), sl = coalesce($3, sl) WHERE position_ref = $1",
                order.position_ref,
                order.tp,
                order.sl,
            )
            return VenueResult(order.client_ref, OrderStatus.FILLED, position_ref=order.position_ref)
        side = Side(pos["side"])
        price = self._fill_price(order.pair_index, side is Side.SHORT)  # closing a long sells
        if price is None:
            return reject("no price")
        amount = min(order.collateral_usdc, pos["collateral_usdc"])
        out = close_outcome(
            amount,
            to_e10(pos["leverage"]),
            to_e10(pos["entry_price"]),
            to_e10(price),
            side,
            close_fee_ppm=pair.close_fee_ppm,
            max_gain_pct=pair.max_gain_pct,
        )
        remaining = pos["collateral_usdc"] - amount
        await conn.execute(
            "UPDATE paper_positions SET collateral_usdc = $2, status = $3 WHERE position_ref = $1",
            order.position_ref,
            remaining if not out.liquidated else 0,
            "open" if remaining > 0 and not out.liquidated else "closed",
        )
        return VenueResult(
            order.client_ref,
            OrderStatus.FILLED,
            price,
            amount,
            out.closing_fee_usdc,
            usdc_sent=out.usdc_sent,
            pnl_usdc=out.usdc_sent - amount,
            position_ref=order.position_ref,
        )

    async def lookup(self, client_refs: list[str]) -> dict[str, VenueResult]:
        rows = await self.pool.fetch(
            "SELECT DISTINCT ON (client_ref) * FROM paper_orders WHERE client_ref = ANY($1::text[]) "
            "ORDER BY client_ref, seq",
            client_refs,
        )
        return {
            r["client_ref"]: VenueResult(
                r["client_ref"],
                r["status"],
                r["price"],
                r["collateral_usdc"],
                r["fee_usdc"],
                r["usdc_sent"],
                r["pnl_usdc"],
                r["position_ref"],
                r["reason"],
            )
            for r in rows
        }

    async def close(self) -> None:
        """Nothing to release: the pool belongs to the caller."""

    async def open_positions(self, account: str) -> list[VenuePosition]:
        rows = await self.pool.fetch(
            "SELECT * FROM paper_positions WHERE account = $1 AND status = 'open' ORDER BY position_ref",
            account,
        )
        return [
            VenuePosition(
                r["position_ref"],
                r["pair_index"],
                Side(r["side"]),
                r["collateral_usdc"],
                r["leverage"],
                r["entry_price"],
            )
            for r in rows
        ]


class DictPriceFeed:
    """Prices set by whoever drives the feed (the simulator, a test, the last leader fills)."""

    def __init__(self, prices: dict[int, Decimal] | None = None):
        self.prices = dict(prices or {})

    def price(self, pair_index: int) -> Decimal | None:
        return self.prices.get(pair_index)
