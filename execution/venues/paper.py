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
class _Held:
    """A paper position as a batch works on it."""

    ref: str
    account: str
    pair_index: int
    side: str
    collateral_usdc: int
    leverage: Decimal
    entry_price: Decimal
    tp: Decimal | None
    sl: Decimal | None
    status: str = "open"
    new: bool = False
    changed: bool = False


def _columns(rows: list[tuple[object, ...]], width: int) -> list[list[object]]:
    """Rows as columns (the arrays of an `unnest`), `width` empty ones when there are no rows."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


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
        """Execute in order. The positions the batch touches are read (locked) once, worked in
        memory, and written back with the orders in one statement: a batch of opens is a single
        round trip, atomic without a transaction of its own."""
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        refs = sorted({o.position_ref for o in orders if o.action is not CopyAction.OPEN and o.position_ref})
        async with self.pool.acquire() as conn:
            if not refs:  # opens only: nothing to read first
                opened: dict[str, _Held] = {}
                results = [self._execute(order, opened) for order in orders]
                await self._write(conn, orders, results, opened)
                return results
            async with conn.transaction():
                book = {
                    r["position_ref"]: _Held(
                        r["position_ref"],
                        r["account"],
                        r["pair_index"],
                        r["side"],
                        r["collateral_usdc"],
                        r["leverage"],
                        r["entry_price"],
                        r["tp"],
                        r["sl"],
                    )
                    for r in await conn.fetch(
                        "SELECT * FROM paper_positions WHERE position_ref = ANY($1::text[]) AND status = 'open' "
                        "ORDER BY position_ref FOR UPDATE",
                        refs,
                    )
                }
                results = [self._execute(order, book) for order in orders]
                await self._write(conn, orders, results, book)
        return results

    async def _write(
        self,
        conn: asyncpg.Connection,
        orders: list[VenueOrder],
        results: list[VenueResult],
        book: dict[str, _Held],
    ) -> None:
        new = [h for h in book.values() if h.new]
        changed = [h for h in book.values() if h.changed and not h.new]
        await conn.execute(
            """
            WITH opened AS (
                INSERT INTO paper_positions (position_ref, account, pair_index, side, collateral_usdc, leverage,
                    entry_price, tp, sl, status)
                SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::bigint[],
                    $6::numeric[], $7::numeric[], $8::numeric[], $9::numeric[], $10::text[])
            ), moved AS (
                UPDATE paper_positions p SET collateral_usdc = c.collateral, status = c.status, tp = c.tp, sl = c.sl
                FROM unnest($11::text[], $12::bigint[], $13::text[], $14::numeric[], $15::numeric[])
                     AS c(ref, collateral, status, tp, sl)
                WHERE p.position_ref = c.ref
            )
            INSERT INTO paper_orders (client_ref, account, action, pair_index, side, collateral_usdc, leverage,
                price, fee_usdc, usdc_sent, pnl_usdc, position_ref, status, reason)
            SELECT * FROM unnest($16::text[], $17::text[], $18::text[], $19::integer[], $20::text[], $21::bigint[],
                $22::numeric[], $23::numeric[], $24::bigint[], $25::bigint[], $26::bigint[], $27::text[],
                $28::text[], $29::text[])
            """,
            *_columns(
                [
                    (
                        h.ref,
                        h.account,
                        h.pair_index,
                        h.side,
                        h.collateral_usdc,
                        h.leverage,
                        h.entry_price,
                        h.tp,
                        h.sl,
                        h.status,
                    )
                    for h in new
                ],
                10,
            ),
            *_columns([(h.ref, h.collateral_usdc, h.status, h.tp, h.sl) for h in changed], 5),
            *_columns(
                [
                    (
                        o.client_ref,
                        o.account,
                        o.action.value,
                        o.pair_index,
                        o.side.value if o.side else None,
                        r.collateral_usdc,
                        o.leverage,
                        r.price,
                        r.fee_usdc,
                        r.usdc_sent,
                        r.pnl_usdc,
                        r.position_ref,
                        r.status.value,
                        r.reason,
                    )
                    for o, r in zip(orders, results, strict=True)
                ],
                14,
            ),
        )

    def _execute(self, order: VenueOrder, book: dict[str, _Held]) -> VenueResult:
        """One order against the batch's book (in memory; written back by `submit_many`)."""
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
            book[order.client_ref] = _Held(
                order.client_ref,
                order.account,
                order.pair_index,
                order.side.value,
                collateral - fee,
                order.leverage,
                price,
                order.tp,
                order.sl,
                new=True,
            )
            return VenueResult(
                order.client_ref,
                OrderStatus.FILLED,
                price,
                collateral - fee,
                fee,
                position_ref=order.client_ref,
            )
        held = book.get(order.position_ref or "")
        if held is None or held.status != "open" or held.account != order.account:
            return reject("no such open position")
        if order.action is CopyAction.UPDATE_TP_SL:
            held.tp = order.tp if order.tp is not None else held.tp
            held.sl = order.sl if order.sl is not None else held.sl
            held.changed = True
            return VenueResult(order.client_ref, OrderStatus.FILLED, position_ref=order.position_ref)
        side = Side(held.side)
        price = self._fill_price(order.pair_index, side is Side.SHORT)  # closing a long sells
        if price is None:
            return reject("no price")
        amount = min(order.collateral_usdc, held.collateral_usdc)
        out = close_outcome(
            amount,
            to_e10(held.leverage),
            to_e10(held.entry_price),
            to_e10(price),
            side,
            close_fee_ppm=pair.close_fee_ppm,
            max_gain_pct=pair.max_gain_pct,
        )
        remaining = held.collateral_usdc - amount
        held.collateral_usdc = remaining if not out.liquidated else 0
        held.status = "open" if remaining > 0 and not out.liquidated else "closed"
        held.changed = True
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
