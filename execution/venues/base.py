"""The one small interface every venue (paper, on-chain, Veranta) implements for the engine.

`client_ref` is our intent id. A venue must answer `lookup(client_ref)` from its own records:
that is how an order whose outcome we lost (crash, timeout) is resolved without resending.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from data.events import Side
from execution.copy.model import CopyAction


class VenueName(StrEnum):
    """Where a profile's copies are placed; one engine (or several) per venue."""

    PAPER = "paper"
    ONCHAIN = "onchain"
    VERANTA = "veranta"


class OrderStatus(StrEnum):
    FILLED = "filled"
    REJECTED = "rejected"


class VenuePending(TimeoutError):
    """The venue has not settled these orders yet (or cannot be asked yet). The engine leaves
    their intents unknown and looks the outcome up later; it never resends them blindly."""


@dataclass(frozen=True)
class VenueOrder:
    client_ref: str
    account: str
    action: CopyAction
    pair_index: int
    side: Side | None = None
    collateral_usdc: int = 0  # to open, or to close
    leverage: Decimal | None = None
    position_ref: str | None = None  # for closes and TP/SL updates
    reference_price: Decimal | None = None  # the leader's fill: the slippage bound is around it
    max_slippage_bps: int = 50
    tp: Decimal | None = None
    sl: Decimal | None = None

    def __post_init__(self) -> None:
        if self.action.__class__ is not CopyAction:  # "open" from a row → the enum
            object.__setattr__(self, "action", CopyAction(self.action))


@dataclass(frozen=True)
class VenueResult:
    client_ref: str
    status: OrderStatus
    price: Decimal | None = None
    collateral_usdc: int = 0  # opened (after the opening fee) or closed
    fee_usdc: int = 0
    usdc_sent: int | None = None
    pnl_usdc: int | None = None
    position_ref: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.status.__class__ is not OrderStatus:
            object.__setattr__(self, "status", OrderStatus(self.status))

    @property
    def filled(self) -> bool:
        return self.status is OrderStatus.FILLED

    def to_json(self) -> str:
        """As a venue stores an outcome it settled (prices as exact decimal strings)."""
        return json.dumps({k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, raw: str) -> VenueResult:
        data = json.loads(raw)
        if data.get("price") is not None:
            data["price"] = Decimal(data["price"])
        return cls(**data)


@dataclass(frozen=True)
class VenuePosition:
    position_ref: str
    pair_index: int
    side: Side
    collateral_usdc: int
    leverage: Decimal
    entry_price: Decimal


class Venue(Protocol):
    name: VenueName

    async def submit_many(self, orders: list[VenueOrder]) -> list[VenueResult]: ...

    async def lookup(self, client_refs: list[str]) -> dict[str, VenueResult]: ...

    async def open_positions(self, account: str) -> list[VenuePosition]: ...

    async def close(self) -> None: ...


class PriceFeed(Protocol):
    def price(self, pair_index: int) -> Decimal | None: ...
