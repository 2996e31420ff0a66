"""The Veranta venue: veranta-sdk in delegate mode. Our delegate key signs each follower's market
open or close as an EIP-712 intent (`trade.market_open` / `trade.market_close`) and the relayer
executes it gaslessly; TP/SL moves go to the core API's price triggers (`trade.update_tp_sl`).
The follower registered our delegate once: we can trade, not withdraw.

Exactly once rests on `veranta_orders`, keyed by our intent id and written before the SDK is
called: a second submit of the same intent never builds a second order, it resolves the first.
The relayer's trackingId is stored the moment the stream announces it (`MarketOrderAccepted`),
and an order with a trackingId is settled by replaying its lifecycle (`wait`). The one gap is a
crash between the request and that first event: the order may or may not have reached the relayer.
Every intent carries a deadline (the SDK's default is 120 s), so once it has passed the order can
no longer execute; the venue then reads the follower's positions, and a position on the pair and
side opened after the request that no copy accounts for is taken as the fill. Until the deadline
has passed such an order stays unknown. A TP/SL update sets absolute levels, so an unsettled one is
simply sent again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
from veranta_sdk import AsyncVeranta
from veranta_sdk.errors import ApiError, RelayError, RelayTimeoutError

from data.events import Side
from data.units import MICRO, from_e10
from execution.copy.model import CopyAction
from execution.venues.base import OrderStatus, VenueName, VenueOrder, VenuePending, VenuePosition, VenueResult
from infra.logs import log_fields

log = logging.getLogger("vanta.venue.veranta")

INTENT_DEADLINE = timedelta(seconds=150)  # the SDK's 120 s intent deadline and a margin


def _refused(exc: Exception) -> bool:
    """A 4xx answer refused the request itself (bad input, unknown position, a signer the venue
    does not accept); timeouts, rate limits, 5xx and dropped connections leave the outcome open."""
    status = getattr(exc, "status", None)
    return status is not None and 400 <= status < 500 and status not in (408, 425, 429)


def _human(micro: int) -> Decimal:
    return Decimal(micro) / MICRO


def result_from_fill(
    client_ref: str, action: CopyAction | str, requested: int, fill: dict[str, Any]
) -> VenueResult:
    """A `MarketOrderExecuted` payload (uints as strings, 1e6 USDC, 1e10 prices) as a result."""
    t = fill["t"]
    price = from_e10(int(fill["price"]))
    ref = f"{int(t['pairIndex'])}:{int(t['index'])}"
    if action == CopyAction.OPEN:
        collateral = int(t["initialPosToken"])
        return VenueResult(
            client_ref, OrderStatus.FILLED, price, collateral, requested - collateral, position_ref=ref
        )
    closed = int(fill["positionSizeUSDC"])
    sent = int(fill["usdcSentToTrader"])
    gross = closed * int(fill["percentProfit"]) // (100 * 10**10)
    # The terminal names no fee: closing fee, rollover and funding are what the PnL lost on the way.
    costs = max(0, closed + gross - sent) if sent > 0 else 0
    return VenueResult(
        client_ref,
        OrderStatus.FILLED,
        price,
        closed,
        costs,
        usdc_sent=sent,
        pnl_usdc=sent - closed,
        position_ref=ref,
    )


class VerantaVenue:
    name = VenueName.VERANTA

    def __init__(self, pool: asyncpg.Pool, delegate_key: str, sdk_config: dict[str, Any] | None = None):
        self.pool = pool
        self._key = delegate_key  # handed to the SDK's signer only
        self._sdk_config = sdk_config or {}
        self._clients: dict[str, AsyncVeranta] = {}

    def _client(self, account: str) -> AsyncVeranta:
        """One SDK client per follower: in delegate mode the trader is part of its configuration."""
        client = self._clients.get(account.lower())
        if client is None:
            client = AsyncVeranta(private_key=self._key, trader_address=account, **self._sdk_config)
            if self._clients:
                # The pair catalogue is the same for every follower: one snapshot and one cache,
                # not a download per follower per fan-out.
                client.markets = next(iter(self._clients.values())).markets
            self._clients[account.lower()] = client
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    # --- sending ------------------------------------------------------------------------------

    async def submit_many(self, orders: list[VenueOrder]) -> list[VenueResult]:
        if orders:
            # Refresh the shared catalogue once here; the concurrent orders below then all hit
            # its cache instead of each downloading the snapshot.
            await self._client(orders[0].account).markets.snapshot()
        results = await asyncio.gather(*(self._submit(o) for o in orders), return_exceptions=True)
        pending = [r for r in results if isinstance(r, BaseException)]
        if pending:
            raise VenuePending(f"{len(pending)} of {len(orders)} Veranta orders unsettled: {pending[0]}")
        return list(results)  # type: ignore[arg-type]

    async def _submit(self, order: VenueOrder) -> VenueResult:
        inserted = await self.pool.fetchval(
            "INSERT INTO veranta_orders (client_ref, account, action, pair_index, side, requested, position_ref, tp, sl) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (client_ref) DO NOTHING RETURNING created_at",
            order.client_ref,
            order.account.lower(),
            order.action,
            order.pair_index,
            order.side.value if order.side else None,
            order.collateral_usdc,
            order.position_ref,
            order.tp,
            order.sl,
        )
        if inserted is None:  # asked before: resolve that order, never place another
            row = await self.pool.fetchrow(
                "SELECT * FROM veranta_orders WHERE client_ref = $1", order.client_ref
            )
            return await self._resolve(row)
        if order.action is CopyAction.UPDATE_TP_SL:
            return await self._update_tp_sl(
                order.client_ref, order.account, order.position_ref, order.tp, order.sl
            )

        async def remember(event: Any) -> None:
            if event.type == "MarketOrderAccepted" and event.data.get("trackingId"):
                await self.pool.execute(
                    "UPDATE veranta_orders SET tracking_id = $2 WHERE client_ref = $1",
                    order.client_ref,
                    str(event.data["trackingId"]),
                )

        trade = self._client(order.account).trade
        try:
            if order.action is CopyAction.OPEN:
                assert order.side is not None and order.leverage is not None
                receipt = await trade.market_open(
                    order.pair_index,
                    order.side.value,
                    collateral=_human(order.collateral_usdc),
                    leverage=order.leverage,
                    open_price=order.reference_price,
                    take_profit=order.tp,
                    stop_loss=order.sl,
                    slippage_percent=Decimal(order.max_slippage_bps) / 100,
                    on_event=remember,
                )
            else:
                pair, index = (int(x) for x in (order.position_ref or "").split(":"))
                receipt = await trade.market_close(
                    pair, index, _human(order.collateral_usdc), on_event=remember
                )
        except RelayTimeoutError as exc:  # accepted, not settled in time: it may still execute
            raise VenuePending(f"Veranta has not settled {order.client_ref}: {exc}") from exc
        except RelayError as exc:  # a terminal answer: canceled by the protocol, or refused
            reason = f"{exc.code or 'relay error'}: {exc}"[:300]
            return await self._store(
                order.client_ref, VenueResult(order.client_ref, OrderStatus.REJECTED, reason=reason)
            )
        except (ApiError, httpx.HTTPError) as exc:
            if _refused(exc):  # the request itself was refused
                return await self._store(
                    order.client_ref,
                    VenueResult(order.client_ref, OrderStatus.REJECTED, reason=str(exc)[:300]),
                )
            raise VenuePending(f"Veranta did not answer for {order.client_ref}: {exc}") from exc
        assert receipt.raw is not None
        result = result_from_fill(order.client_ref, order.action, order.collateral_usdc, receipt.raw)
        return await self._store(order.client_ref, result)

    async def _update_tp_sl(
        self, ref: str, account: str, position: str | None, tp: Decimal | None, sl: Decimal | None
    ) -> VenueResult:
        """The position's on-chain TP/SL through the core API's price triggers (a signed
        `UpdateTpSlReq`); the SDK waits until the new levels show on the position."""
        if tp is None and sl is None:
            return await self._store(ref, VenueResult(ref, OrderStatus.REJECTED, reason="no TP or SL to set"))
        pair, index = (int(x) for x in (position or "").split(":"))
        try:
            await self._client(account).trade.update_tp_sl(pair, index, take_profit=tp, stop_loss=sl)
        except RelayTimeoutError as exc:
            raise VenuePending(f"TP/SL update {ref} accepted, not visible yet: {exc}") from exc
        except ApiError as exc:
            if _refused(exc):
                return await self._store(ref, VenueResult(ref, OrderStatus.REJECTED, reason=str(exc)[:300]))
            raise VenuePending(f"Veranta did not answer for {ref}: {exc}") from exc
        return await self._store(ref, VenueResult(ref, OrderStatus.FILLED, position_ref=position))

    async def _store(self, client_ref: str, result: VenueResult) -> VenueResult:
        await self.pool.execute(
            "UPDATE veranta_orders SET outcome = $2::jsonb WHERE client_ref = $1 AND outcome IS NULL",
            client_ref,
            result.to_json(),
        )
        return result

    # --- resolving ----------------------------------------------------------------------------

    async def _resolve(self, row: asyncpg.Record) -> VenueResult:
        if row["outcome"] is not None:
            return VenueResult.from_json(row["outcome"])
        ref = row["client_ref"]
        client = self._client(row["account"])
        if row["action"] == CopyAction.UPDATE_TP_SL:
            # Absolute levels: setting them again cannot do anything twice, so it is sent again.
            return await self._update_tp_sl(ref, row["account"], row["position_ref"], row["tp"], row["sl"])
        if row["tracking_id"] is not None:
            try:
                outcome = await client.engine.batched_market.wait(row["tracking_id"], timeout_s=30)
            except RelayTimeoutError as exc:
                raise VenuePending(f"Veranta has not settled {ref}: {exc}") from exc
            except RelayError as exc:
                return await self._store(
                    ref, VenueResult(ref, OrderStatus.REJECTED, reason=f"{exc.code}: {exc}"[:300])
                )
            assert outcome.terminal is not None
            return await self._store(
                ref, result_from_fill(ref, row["action"], row["requested"], outcome.terminal.data)
            )
        if datetime.now(UTC) < row["created_at"] + INTENT_DEADLINE:
            raise VenuePending(f"{ref}: no trackingId yet and its intent may still execute")
        found = await self._unaccounted_fill(row)
        if found is None:
            log.warning("order never reached Veranta; its deadline has passed", extra=log_fields(intent=ref))
            return await self._store(
                ref, VenueResult(ref, OrderStatus.REJECTED, reason="never reached the relayer")
            )
        return await self._store(ref, found)

    async def _unaccounted_fill(self, row: asyncpg.Record) -> VenueResult | None:
        """After the deadline, an open is found by the position it would have made: one on its
        pair and side that none of this venue's own settled orders accounts for."""
        if row["action"] != CopyAction.OPEN:
            return None  # a close that did not happen leaves the position: reconciliation sees it
        accounted = await self._accounted_positions(row["account"])
        for p in await self.open_positions(row["account"]):
            if (
                p.position_ref in accounted
                or p.pair_index != row["pair_index"]
                or p.side.value != row["side"]
            ):
                continue
            return VenueResult(
                row["client_ref"],
                OrderStatus.FILLED,
                p.entry_price,
                p.collateral_usdc,
                0,
                position_ref=p.position_ref,
            )
        return None

    async def _accounted_positions(self, account: str) -> set[str]:
        """Positions our filled orders opened and did not close since (Avantis reuses a trade
        index once its position is closed: a later position there is not ours until shown)."""
        rows = await self.pool.fetch(
            "SELECT action, outcome->>'position_ref' AS ref FROM veranta_orders WHERE account = $1 "
            "AND outcome->>'status' = 'filled' AND outcome->>'position_ref' IS NOT NULL ORDER BY created_at",
            account.lower(),
        )
        accounted: set[str] = set()
        for r in rows:
            if r["action"] == CopyAction.OPEN:
                accounted.add(r["ref"])
            elif r["action"] == CopyAction.CLOSE:
                accounted.discard(r["ref"])
        return accounted

    async def lookup(self, client_refs: list[str]) -> dict[str, VenueResult]:
        rows = await self.pool.fetch(
            "SELECT * FROM veranta_orders WHERE client_ref = ANY($1::text[])", client_refs
        )
        resolved = await asyncio.gather(*(self._resolve(r) for r in rows), return_exceptions=True)
        out = {
            r["client_ref"]: res
            for r, res in zip(rows, resolved, strict=True)
            if isinstance(res, VenueResult)
        }
        if len(out) < len(rows):
            raise VenuePending(f"{len(rows) - len(out)} Veranta orders cannot be resolved yet")
        return out

    async def open_positions(self, account: str) -> list[VenuePosition]:
        data = await self._client(account).account.positions()
        return [
            VenuePosition(
                f"{p.pair_index}:{p.index}",
                p.pair_index,
                Side.LONG if p.buy else Side.SHORT,
                int(p.collateral_raw),
                from_e10(int(p.leverage_raw)),
                from_e10(int(p.open_price_raw)),
            )
            for p in data.positions
        ]
