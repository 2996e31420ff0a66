"""The canonical `TradeEvent`: one thing a trader did, whatever the venue or source.

Every source (chain logs, the Veranta history API, the order stream, the simulator) produces
these; the ledger, the tracker and the executor consume nothing else. Money fields are integer
micro-USDC; prices and leverage are `Decimal`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    OPEN = "open"
    CLOSE = "close"
    PARTIAL_CLOSE = "partial_close"
    LIQUIDATION = "liquidation"
    TP = "tp"
    SL = "sl"
    MARGIN_UPDATE = "margin_update"
    TP_SL_UPDATE = "tp_sl_update"
    CANCEL = "cancel"


CLOSING_KINDS = frozenset(
    {EventKind.CLOSE, EventKind.PARTIAL_CLOSE, EventKind.LIQUIDATION, EventKind.TP, EventKind.SL}
)


class Side(StrEnum):
    LONG = "long"
    SHORT = "short"

    @property
    def sign(self) -> int:
        return 1 if self is Side.LONG else -1


def position_key(trader: str, pair_index: int, trade_index: int, open_ts: int) -> str:
    """Avantis reuses a trade index after a full close, so the open timestamp is part of the identity."""
    return f"{trader.lower()}:{pair_index}:{trade_index}:{open_ts}"


@dataclass(frozen=True, slots=True)
class TradeEvent:
    event_id: str
    venue: str
    source: str
    trader: str
    pair_index: int
    kind: EventKind
    trade_index: int
    open_ts: int  # epoch seconds the position opened: part of its identity
    ts: int  # epoch seconds of this event
    side: Side | None = None
    # Collateral of the position *before* a close, *after* an open/margin update (micro-USDC).
    collateral_usdc: int | None = None
    leverage: Decimal | None = None
    price: Decimal | None = None
    size_closed_usdc: int | None = None  # collateral closed by a close event
    open_fee_usdc: int = 0
    close_fee_usdc: int = 0
    rollover_fee_usdc: int = 0  # rollover / funding / margin fee
    loss_protection_usdc: int = 0  # the part of a loss the protocol forgave
    usdc_sent: int | None = None  # paid to the trader by a close
    gross_pnl_usdc: int | None = None  # price PnL of the closed part, after loss protection
    pair: str | None = None
    block: int | None = None
    block_hash: str | None = None
    chain_id: int | None = None
    tx_hash: str | None = None
    log_index: int | None = None
    order_id: int | None = None
    tp: Decimal | None = None
    sl: Decimal | None = None

    @property
    def position_key(self) -> str:
        return position_key(self.trader, self.pair_index, self.trade_index, self.open_ts)

    @property
    def is_close(self) -> bool:
        return self.kind in CLOSING_KINDS

    def to_record(self) -> dict[str, Any]:
        """Plain JSON-able values (Decimals as strings) for Parquet, the bus and JSON columns."""
        out = asdict(self)
        for name, value in out.items():
            if isinstance(value, Decimal):
                out[name] = str(value)
            elif isinstance(value, StrEnum):
                out[name] = value.value
        return out

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> TradeEvent:
        values = dict(rec)
        for name in ("leverage", "price", "tp", "sl"):
            if values.get(name) is not None:
                values[name] = Decimal(str(values[name]))
        values["kind"] = EventKind(values["kind"])
        if values.get("side") is not None:
            values["side"] = Side(values["side"])
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})
