"""Exact positions and realized PnL from canonical Avantis events.

Positions are identity-keyed as Avantis has them: (trader, pair, trade index, open timestamp),
because the index is reused after a full close. Realized PnL of a close is what the contracts
paid minus the collateral it closed and its pro-rata share of the opening fee, so summing the
closes of a round trip gives exactly cash out minus cash in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from data.events import EventKind, Side, TradeEvent


class LedgerError(ValueError):
    """An event the ledger cannot apply (it names the event)."""


@dataclass(slots=True)
class Position:
    key: str
    trader: str
    pair_index: int
    side: Side
    opened_at: int
    open_price: Decimal
    leverage: Decimal
    collateral_usdc: int  # current collateral (micro-USDC)
    open_collateral_usdc: int  # total collateral put in by opens/increases
    open_fee_usdc: int  # opening fees not yet attributed to a close
    realized_pnl_usdc: int = 0
    fees_usdc: int = 0
    open_seen: bool = True  # False when the open happened before our data began
    closed_at: int | None = None
    liquidated: bool = False
    last_event_id: str = ""

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


@dataclass(frozen=True, slots=True)
class RealizedClose:
    event_id: str
    position_key: str
    trader: str
    pair_index: int
    side: Side
    kind: EventKind
    ts: int
    opened_at: int
    collateral_closed_usdc: int
    leverage: Decimal
    usdc_sent: int
    close_fee_usdc: int
    rollover_fee_usdc: int
    open_fee_share_usdc: int
    full: bool

    @property
    def realized_pnl_usdc(self) -> int:
        return self.usdc_sent - self.collateral_closed_usdc - self.open_fee_share_usdc

    @property
    def notional_usdc(self) -> int:
        return int(self.collateral_closed_usdc * self.leverage)

    @property
    def hold_seconds(self) -> int:
        return self.ts - self.opened_at


@dataclass
class PositionLedger:
    positions: dict[str, Position] = field(default_factory=dict)
    seen_events: set[str] = field(default_factory=set)

    def apply_all(self, events: list[TradeEvent]) -> list[RealizedClose]:
        closes = []
        for ev in events:
            closed = self.apply(ev)
            if closed is not None:
                closes.append(closed)
        return closes

    def apply(self, ev: TradeEvent) -> RealizedClose | None:
        """Apply one event; a repeat of an event id is ignored (sources deliver at least once)."""
        if ev.event_id in self.seen_events:
            return None
        handler = _HANDLERS.get(ev.kind)
        if handler is None:
            raise LedgerError(f"{ev.event_id}: unknown event kind {ev.kind!r}")
        result = handler(self, ev)
        self.seen_events.add(ev.event_id)
        return result

    # -- handlers -------------------------------------------------------------------------------

    def _open(self, ev: TradeEvent) -> None:
        if ev.side is None or ev.collateral_usdc is None or ev.leverage is None or ev.price is None:
            raise LedgerError(f"{ev.event_id}: an open needs side, collateral, leverage and price")
        if ev.collateral_usdc <= 0 or ev.leverage <= 0 or ev.price <= 0:
            raise LedgerError(f"{ev.event_id}: collateral, leverage and price must be positive")
        pos = self.positions.get(ev.position_key)
        if pos is None or not pos.is_open:
            self.positions[ev.position_key] = Position(
                key=ev.position_key,
                trader=ev.trader,
                pair_index=ev.pair_index,
                side=ev.side,
                opened_at=ev.open_ts,
                open_price=ev.price,
                leverage=ev.leverage,
                collateral_usdc=ev.collateral_usdc,
                open_collateral_usdc=ev.collateral_usdc,
                open_fee_usdc=ev.open_fee_usdc,
                fees_usdc=ev.open_fee_usdc,
                last_event_id=ev.event_id,
            )
            return
        if ev.side is not pos.side:
            raise LedgerError(f"{ev.event_id}: increase on the opposite side of {pos.key}")
        # An increase: the open price becomes the notional-weighted average, as the contracts do.
        # A position adopted from a close before our data began has no known open price (0), and
        # an average with an unknown term is unknown: it stays 0.
        old_notional = pos.collateral_usdc * pos.leverage
        add_notional = ev.collateral_usdc * ev.leverage
        total = old_notional + add_notional
        if pos.open_price > 0:
            pos.open_price = total / (old_notional / pos.open_price + add_notional / ev.price)
        pos.collateral_usdc += ev.collateral_usdc
        pos.open_collateral_usdc += ev.collateral_usdc
        pos.leverage = total / pos.collateral_usdc
        pos.open_fee_usdc += ev.open_fee_usdc
        pos.fees_usdc += ev.open_fee_usdc
        pos.last_event_id = ev.event_id

    def _close(self, ev: TradeEvent) -> RealizedClose:
        if ev.size_closed_usdc is None or ev.usdc_sent is None:
            raise LedgerError(f"{ev.event_id}: a close needs size_closed_usdc and usdc_sent")
        if ev.size_closed_usdc <= 0 or ev.usdc_sent < 0:
            raise LedgerError(f"{ev.event_id}: closed size must be positive and usdc_sent not negative")
        pos = self.positions.get(ev.position_key)
        if pos is None or not pos.is_open:
            pos = self._adopt_unseen_open(ev)
        closed = ev.size_closed_usdc
        if closed > pos.collateral_usdc:
            raise LedgerError(f"{ev.event_id}: closes {closed} but {pos.key} holds {pos.collateral_usdc}")
        full = closed == pos.collateral_usdc or ev.kind is EventKind.LIQUIDATION
        # Pro-rata share of the opening fee; the last close takes the remainder so nothing is lost to rounding.
        share = pos.open_fee_usdc if full else pos.open_fee_usdc * closed // pos.collateral_usdc
        pos.open_fee_usdc -= share
        pos.collateral_usdc -= pos.collateral_usdc if full else closed
        result = RealizedClose(
            event_id=ev.event_id,
            position_key=pos.key,
            trader=pos.trader,
            pair_index=pos.pair_index,
            side=pos.side,
            kind=ev.kind,
            ts=ev.ts,
            opened_at=pos.opened_at,
            collateral_closed_usdc=closed,
            leverage=ev.leverage or pos.leverage,
            usdc_sent=ev.usdc_sent,
            close_fee_usdc=ev.close_fee_usdc,
            rollover_fee_usdc=ev.rollover_fee_usdc,
            open_fee_share_usdc=share,
            full=full,
        )
        pos.realized_pnl_usdc += result.realized_pnl_usdc
        pos.fees_usdc += ev.close_fee_usdc + ev.rollover_fee_usdc
        pos.last_event_id = ev.event_id
        if full:
            pos.closed_at = ev.ts
            pos.liquidated = ev.kind is EventKind.LIQUIDATION
        return result

    def _adopt_unseen_open(self, ev: TradeEvent) -> Position:
        """A close whose open predates our data: the close event carries the trade as it stood."""
        if ev.side is None or ev.collateral_usdc is None or ev.leverage is None:
            raise LedgerError(f"{ev.event_id}: close of unknown position {ev.position_key} without the trade")
        pos = Position(
            key=ev.position_key,
            trader=ev.trader,
            pair_index=ev.pair_index,
            side=ev.side,
            opened_at=ev.open_ts,
            open_price=Decimal(0),
            leverage=ev.leverage,
            collateral_usdc=ev.collateral_usdc,
            open_collateral_usdc=ev.collateral_usdc,
            open_fee_usdc=0,
            open_seen=False,
        )
        self.positions[ev.position_key] = pos
        return pos

    def _margin_update(self, ev: TradeEvent) -> None:
        pos = self.positions.get(ev.position_key)
        if pos is None or not pos.is_open:
            raise LedgerError(f"{ev.event_id}: margin update of unknown position {ev.position_key}")
        if ev.collateral_usdc is None or ev.collateral_usdc <= 0:
            raise LedgerError(f"{ev.event_id}: margin update needs the new collateral")
        notional = pos.collateral_usdc * pos.leverage
        pos.open_collateral_usdc += ev.collateral_usdc - pos.collateral_usdc
        pos.collateral_usdc = ev.collateral_usdc
        pos.leverage = ev.leverage if ev.leverage is not None else notional / ev.collateral_usdc
        # The margin fee is a realized cost of holding the position.
        pos.realized_pnl_usdc -= ev.rollover_fee_usdc
        pos.fees_usdc += ev.rollover_fee_usdc
        pos.last_event_id = ev.event_id

    def _no_pnl(self, ev: TradeEvent) -> None:
        pos = self.positions.get(ev.position_key)
        if pos is not None:
            pos.last_event_id = ev.event_id


_HANDLERS = {
    EventKind.OPEN: PositionLedger._open,
    EventKind.CLOSE: PositionLedger._close,
    EventKind.PARTIAL_CLOSE: PositionLedger._close,
    EventKind.TP: PositionLedger._close,
    EventKind.SL: PositionLedger._close,
    EventKind.LIQUIDATION: PositionLedger._close,
    EventKind.MARGIN_UPDATE: PositionLedger._margin_update,
    EventKind.TP_SL_UPDATE: PositionLedger._no_pnl,
    EventKind.CANCEL: PositionLedger._no_pnl,
}
