"""What the copy service answers: plain, typed views of profiles, follows, copies, PnL per
leader and notifications, the same for the CLI's tables and `--json` and for the bot's messages.
Money is integer micro-USDC (format with `data.units.format_usdc`), prices `Decimal`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import asyncpg

# --- what the service answers ----------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileView:
    id: int
    name: str
    venue: str
    wallet: str | None
    equity_usdc: int | None
    daily_loss_limit_usdc: int | None
    max_drawdown_pct: Decimal | None
    max_total_exposure_usdc: int | None
    status: str
    pause_reason: str | None
    telegram_user_id: int | None

    @classmethod
    def of(cls, r: asyncpg.Record) -> ProfileView:
        return cls(
            r["id"],
            r["name"],
            r["venue"],
            r["wallet_address"],
            r["equity_usdc"],
            r["daily_loss_limit_usdc"],
            r["max_drawdown_pct"],
            r["max_total_exposure_usdc"],
            r["status"],
            r["pause_reason"],
            r["telegram_user_id"],
        )


@dataclass(frozen=True)
class FollowView:
    id: int
    profile_id: int
    profile: str
    venue: str
    leader: str
    mode: str
    settings: dict[str, Any]

    @classmethod
    def of(cls, r: asyncpg.Record) -> FollowView:
        keys = (
            "fixed_collateral_usdc",
            "equity_pct",
            "multiplier",
            "per_trade_cap_usdc",
            "leverage_cap",
            "max_position_usdc",
            "side_filter",
            "reverse",
            "copy_tp_sl",
            "copy_existing",
            "slippage_bps",
            "regime_guard",
            "pair_allow",
            "pair_block",
        )
        settings = {k: r[k] for k in keys if r[k] not in (None, [], False) or k in ("reverse", "copy_tp_sl")}
        return cls(
            r["id"],
            r["profile_id"],
            r["profile"],
            r["venue"],
            r["leader_address"],
            r["sizing_mode"],
            settings,
        )


@dataclass(frozen=True)
class Followed:
    profile_id: int
    follow_id: int


@dataclass(frozen=True)
class PositionView:
    leader: str | None
    pair_index: int
    pair: str
    side: str
    status: str
    collateral_usdc: int
    leverage: Decimal
    entry_price: Decimal
    leader_entry_price: Decimal | None
    exit_price: Decimal | None
    leader_exit_price: Decimal | None
    open_fee_usdc: int
    close_fee_usdc: int
    realized_pnl_usdc: int
    unrealized_pnl_usdc: int | None  # open copies at the latest known price; None if unknown
    is_manual: bool


@dataclass(frozen=True)
class LeaderPnl:
    leader: str
    positions: int
    open: int
    realized_pnl_usdc: int
    unrealized_pnl_usdc: int | None  # None when an open copy has no known price
    fees_usdc: int
    slippage_cost_usdc: int


@dataclass(frozen=True)
class CopiesReport:
    profile_id: int
    positions: list[PositionView]
    per_leader: list[LeaderPnl]


@dataclass(frozen=True)
class CopyView:
    """One recent copy or refusal."""

    at: Any
    leader: str
    action: str
    state: str
    pair: str
    collateral_usdc: int | None
    fill_price: Decimal | None
    pnl_usdc: int | None
    reason: str | None  # refusal reason, or the venue's / the error's


@dataclass(frozen=True)
class NoticeView:
    id: int
    kind: str
    level: str
    text: str
    fields: dict[str, Any]
    at: Any
    status: str


def as_dict(view: Any) -> dict[str, Any]:
    """A view as plain data for `--json` (decimals and times as strings by the caller's encoder)."""
    return asdict(view)
