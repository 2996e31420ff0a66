"""What a copy is made of: the follower's profile and per-leader settings, and the refusals.

Money is integer micro-USDC, leverage and prices `Decimal`. A refusal is a named reason, stored
in `copy_intents.refusal_reason` and shown to the follower; nothing is ever silently resized.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from data.events import Side


class SizingMode(StrEnum):
    FIXED = "fixed"  # fixed collateral per trade
    EQUITY_PCT = "equity_pct"  # percent of the follower's equity
    PROPORTIONAL = "proportional"  # the leader's collateral/equity share, applied to the follower
    MULTIPLIER = "multiplier"  # a multiple of the leader's collateral


class Refusal(StrEnum):
    KILL_SWITCH = "kill_switch"
    PROFILE_PAUSED = "profile_paused"
    PAIR_UNKNOWN = "pair_unknown"
    PAIR_BLOCKED = "pair_blocked"
    PAIR_NOT_ALLOWED = "pair_not_allowed"
    SIDE_FILTERED = "side_filtered"
    OPENED_BEFORE_FOLLOW = "opened_before_follow"
    EVENT_TOO_OLD = "event_too_old"
    NO_PRICE = "no_price"
    SLIPPAGE = "slippage"
    EQUITY_UNKNOWN = "equity_unknown"
    LEADER_EQUITY_UNKNOWN = "leader_equity_unknown"
    BELOW_VENUE_MINIMUM = "below_venue_minimum"
    OVER_MAX_POSITION = "over_max_position"
    OVER_TOTAL_EXPOSURE = "over_total_exposure"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    MAX_DRAWDOWN = "max_drawdown"
    NO_COPIED_POSITION = "no_copied_position"
    TP_SL_NOT_COPIED = "tp_sl_not_copied"
    REGIME_RED = "regime_red"
    REGIME_UNKNOWN = "regime_unknown"


class CopyAction(StrEnum):
    OPEN = "open"
    CLOSE = "close"
    PARTIAL_CLOSE = "partial_close"
    UPDATE_TP_SL = "update_tp_sl"


@dataclass(frozen=True)
class Profile:
    id: int
    user_id: int
    venue: str
    equity_usdc: int | None
    peak_equity_usdc: int | None
    daily_loss_limit_usdc: int | None
    max_drawdown_pct: Decimal | None
    max_total_exposure_usdc: int | None
    status: str = "active"
    wallet_address: str | None = None


@dataclass(frozen=True)
class FollowConfig:
    sizing_mode: SizingMode
    fixed_collateral_usdc: int | None = None
    equity_pct: Decimal | None = None
    multiplier: Decimal | None = None
    per_trade_cap_usdc: int | None = None
    leverage_cap: Decimal | None = None
    max_position_usdc: int | None = None
    pair_allow: frozenset[int] | None = None
    pair_block: frozenset[int] = frozenset()
    side_filter: str = "both"  # both | long | short
    reverse: bool = False
    copy_tp_sl: bool = True
    copy_existing: bool = False
    slippage_bps: int = 50
    regime_guard: bool = False  # refuse opens while the market-regime model says red


@dataclass(frozen=True)
class Follow:
    id: int
    profile: Profile
    config: FollowConfig
    leader: str
    followed_at: int  # epoch seconds


@dataclass(frozen=True)
class SizedOpen:
    side: Side
    collateral_usdc: int
    leverage: Decimal

    @property
    def notional_usdc(self) -> int:
        return int(self.collateral_usdc * self.leverage)
