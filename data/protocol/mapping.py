"""From decoded Avantis logs to canonical `TradeEvent`s.

Joins that a single log cannot answer are kept here as small state:
- PairInfos' `FeesCharged` precedes the close it belongs to in the same transaction; its closing
  fee, rollover (`r`) and loss protection are attached to that close.
- TradingStorage's `FeesCharged(trader, pairIndex, buy, fee)` precedes the open it belongs to in
  the same transaction: its fee is the open's `open_fee_usdc` (the deposit minus `initialPosToken`),
  which the history API does not report. One in a close's transaction is a share of fees the
  close's PairInfos event already counts, and is dropped.
- `MarketOrderInitiated` only announces an order; the open or close it leads to carries the same
  order id (stored with the event), so the two join in SQL. A market open that is canceled never
  became a position: its cancel is keyed by trader, pair, index -1 and open time 0, with the order
  id, so it maps the same whatever the mapper saw before (restarts, reorgs).
- `TpUpdated`/`SlUpdated`/`MarginUpdated` name a position by (trader, pair, index) only; the index is
  reused after a close, so the open timestamp comes from the positions this mapper has seen open
  (seeded from the database on restart). Trading's and Callbacks' `SlUpdated` (the oracle-run
  stop-loss update) are both TP/SL updates; Callbacks' `MarginUpdated` carries the stop loss a
  margin update left, so it is a TP/SL update too (Trading's is the margin update itself).
- Pending orders (`MarketOrderInitiated`, `LimitOrderInitiated`, `OpenLimitPlaced`,
  `OpenLimitUpdated`, `SlUpdateInitiated`) change no position: decoded, not mapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from data.events import EventKind, Side, TradeEvent
from data.protocol.decode import DecodedLog
from data.units import from_e10, tdiv

LIMIT_KINDS = {0: EventKind.TP, 1: EventKind.SL, 2: EventKind.LIQUIDATION}
LIMIT_OPEN = 3


@dataclass(frozen=True)
class LogContext:
    chain_id: int
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    block_ts: int

    @property
    def event_id(self) -> str:
        return f"chain:{self.chain_id}:{self.tx_hash}:{self.log_index}"


@dataclass
class ChainMapper:
    venue: str = "avantis"
    fees_by_tx: dict[str, dict[str, Any]] = field(default_factory=dict)
    open_fees_by_tx: dict[str, int] = field(default_factory=dict)
    open_ts: dict[tuple[str, int, int], int] = field(default_factory=dict)

    def map(self, log: DecodedLog, ctx: LogContext) -> TradeEvent | None:
        f = log.fields
        name = log.name
        if name == "MarketOrderInitiated":
            return None
        if name == "FeesCharged" and log.emitter == "trading_storage":
            self.open_fees_by_tx[ctx.tx_hash] = self.open_fees_by_tx.get(ctx.tx_hash, 0) + f["fee"]
            return None
        if name == "FeesCharged":
            self.fees_by_tx[ctx.tx_hash] = f
            return None
        if name == "MarketExecuted":
            if f["open"]:
                return self._open(f["t"], f["positionSizeUSDC"], f["price"], ctx, f["orderId"])
            return self._close(f, ctx, None)
        if name == "LimitExecuted":
            if f["orderType"] == LIMIT_OPEN:
                return self._open(f["t"], f["positionSizeUSDC"], f["price"], ctx, f["orderId"])
            return self._close(f, ctx, LIMIT_KINDS.get(f["orderType"]))
        if name == "MarginUpdated" and log.emitter == "callbacks":
            return self._sl_update(f, ctx, f["newSl"])
        if name == "MarginUpdated":
            t = f["newTrade"]
            key = (t["trader"], t["pairIndex"], t["index"])
            return self._event(
                ctx,
                EventKind.MARGIN_UPDATE,
                t["trader"],
                t["pairIndex"],
                t["index"],
                self.open_ts.get(key, t["timestamp"]),
                side=Side.LONG if t["buy"] else Side.SHORT,
                collateral_usdc=t["initialPosToken"],
                leverage=from_e10(t["leverage"]),
                rollover_fee_usdc=f["marginFees"],
            )
        if name == "TpUpdated":
            key = (f["trader"], f["pairIndex"], f["index"])
            return self._event(
                ctx,
                EventKind.TP_SL_UPDATE,
                f["trader"],
                f["pairIndex"],
                f["index"],
                self.open_ts.get(key, 0),
                tp=from_e10(f["newTp"]),
            )
        if name == "SlUpdated":
            return self._sl_update(f, ctx, f["newSl"])
        if name == "MarketOpenCanceled":
            return self._event(
                ctx, EventKind.CANCEL, f["trader"], f["pairIndex"], -1, 0, order_id=f["orderId"]
            )
        if name == "OpenLimitCanceled":
            return self._event(ctx, EventKind.CANCEL, f["trader"], f["pairIndex"], f["index"], f["timestamp"])
        return None  # pending orders (OpenLimitPlaced, SlUpdateInitiated, ...): not a position

    def _sl_update(self, f: dict[str, Any], ctx: LogContext, new_sl: int) -> TradeEvent:
        key = (f["trader"], f["pairIndex"], f["index"])
        return self._event(
            ctx,
            EventKind.TP_SL_UPDATE,
            f["trader"],
            f["pairIndex"],
            f["index"],
            self.open_ts.get(key, 0),
            sl=from_e10(new_sl),
            order_id=f.get("orderId"),
        )

    def _event(
        self, ctx: LogContext, kind: EventKind, trader: str, pair: int, index: int, open_ts: int, **kw: Any
    ) -> TradeEvent:
        return TradeEvent(
            event_id=ctx.event_id,
            venue=self.venue,
            source="chain",
            trader=trader.lower(),
            pair_index=pair,
            kind=kind,
            trade_index=index,
            open_ts=open_ts,
            ts=ctx.block_ts,
            block=ctx.block_number,
            block_hash=ctx.block_hash,
            chain_id=ctx.chain_id,
            tx_hash=ctx.tx_hash,
            log_index=ctx.log_index,
            **kw,
        )

    def _open(
        self, t: dict[str, Any], collateral: int, price: int, ctx: LogContext, order_id: int
    ) -> TradeEvent:
        key = (t["trader"], t["pairIndex"], t["index"])
        self.open_ts[key] = t["timestamp"]
        return self._event(
            ctx,
            EventKind.OPEN,
            t["trader"],
            t["pairIndex"],
            t["index"],
            t["timestamp"],
            side=Side.LONG if t["buy"] else Side.SHORT,
            collateral_usdc=collateral,
            leverage=from_e10(t["leverage"]),
            price=from_e10(price),
            tp=from_e10(t["tp"]),
            sl=from_e10(t["sl"]),
            order_id=order_id,
            open_fee_usdc=self.open_fees_by_tx.pop(ctx.tx_hash, 0),
        )

    def _close(self, f: dict[str, Any], ctx: LogContext, limit_kind: EventKind | None) -> TradeEvent:
        t = f["t"]
        closed = f["positionSizeUSDC"]
        kind = limit_kind or (EventKind.PARTIAL_CLOSE if closed < t["initialPosToken"] else EventKind.CLOSE)
        fees = self.fees_by_tx.pop(ctx.tx_hash, None) or {}
        self.open_fees_by_tx.pop(ctx.tx_hash, None)
        key = (t["trader"], t["pairIndex"], t["index"])
        if kind is not EventKind.PARTIAL_CLOSE:
            self.open_ts.pop(key, None)
        return self._event(
            ctx,
            kind,
            t["trader"],
            t["pairIndex"],
            t["index"],
            t["timestamp"],
            side=Side.LONG if t["buy"] else Side.SHORT,
            collateral_usdc=t["initialPosToken"],
            leverage=from_e10(t["leverage"]),
            price=from_e10(f["price"]),
            size_closed_usdc=closed,
            usdc_sent=f["usdcSentToTrader"],
            gross_pnl_usdc=tdiv(closed * f["percentProfit"], 10**12),
            close_fee_usdc=fees.get("closingFee", 0),
            rollover_fee_usdc=fees.get("r", 0),
            loss_protection_usdc=fees.get("lossProtection", 0),
            order_id=f["orderId"],
            tp=from_e10(t["tp"]),
            sl=from_e10(t["sl"]),
        )
