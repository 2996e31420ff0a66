"""What a copy is made of: the follower's profile and per-leader settings, and the refusals.

Money is integer micro-USDC, leverage and prices `Decimal`. A refusal is a named reason, stored
in `copy_intents.refusal_reason` and shown to the follower; nothing is ever silently resized.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
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
    INVALID_FOLLOW_SETTINGS = "invalid_follow_settings"  # a stored setting the rules cannot apply
    OPEN_NOT_SEEN = "open_not_seen"  # a close waited its bound for an open that never came


class CopyAction(StrEnum):
    OPEN = "open"
    CLOSE = "close"
    PARTIAL_CLOSE = "partial_close"
    UPDATE_TP_SL = "update_tp_sl"


class IntentState(StrEnum):
    PLANNED = "planned"  # written, not sent (a close may be waiting for its open)
    REFUSED = "refused"  # a rule said no, with a `Refusal`
    SENT = "sent"  # marked before the venue is called: found later, it is looked up, not resent
    FILLED = "filled"
    REJECTED = "rejected"  # the venue said no
    UNKNOWN = "unknown"  # the venue call failed or has not settled: looked up later
    RESOLVED = "resolved"  # the outcome was learnt by asking the venue after a crash
    FAILED = "failed"  # could not be worked (its values break the venue or the books): never retried


# Not final: some engine still has to bring these to an end.
OPEN_STATES = frozenset({IntentState.PLANNED, IntentState.SENT, IntentState.UNKNOWN})


class ProfileStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"  # by the follower, or by a limit (daily loss, drawdown): closes still mirrored
    STOPPED = "stopped"  # no new copies; closes of open copies still mirrored


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


# The ranges each setting lies in (money in micro-USDC). The service refuses anything else where
# it enters, the database's CHECK constraints say the same, and the engine refuses to apply a
# stored value outside them (a row written before the constraints): one table for all three.
FOLLOW_BOUNDS: dict[str, tuple[Decimal, Decimal]] = {
    "fixed_collateral_usdc": (Decimal(1), Decimal(10**13)),  # 10 M USDC a trade
    "per_trade_cap_usdc": (Decimal(1), Decimal(10**13)),
    "max_position_usdc": (Decimal(1), Decimal(10**15)),  # notional, 1 B USDC
    "equity_pct": (Decimal("1e-18"), Decimal(100)),  # more than zero
    "multiplier": (Decimal("1e-18"), Decimal(100)),
    "leverage_cap": (Decimal(1), Decimal(1000)),
    "slippage_bps": (Decimal(0), Decimal(10_000)),
}
PROFILE_BOUNDS: dict[str, tuple[Decimal, Decimal]] = {
    "equity_usdc": (Decimal(0), Decimal(10**15)),
    "daily_loss_limit_usdc": (Decimal(1), Decimal(10**15)),
    "max_drawdown_pct": (Decimal("0.0001"), Decimal(100)),
    "max_total_exposure_usdc": (Decimal(1), Decimal(10**15)),
}


def out_of_bounds(name: str, value: object, bounds: dict[str, tuple[Decimal, Decimal]]) -> str | None:
    """Why a stored or given value cannot be applied, or None if it can."""
    if value is None:
        return None
    low, high = bounds[name]
    if type(value) is int:  # the common case, kept cheap: the engine asks for every follow
        return None if low <= value <= high else f"{name} {value} is outside {low}..{high}"
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return f"{name} is not a number: {value!r}"
    if not number.is_finite():
        return f"{name} is {value}"
    if not low <= number <= high:
        return f"{name} {value} is outside {low}..{high}"
    return None


def follow_problem(follow: Follow) -> str | None:
    """The first setting of a follow (or its profile) that the rules cannot apply."""
    for f in fields(FollowConfig):
        if f.name in FOLLOW_BOUNDS:
            problem = out_of_bounds(f.name, getattr(follow.config, f.name), FOLLOW_BOUNDS)
            if problem:
                return problem
    for name in PROFILE_BOUNDS:
        problem = out_of_bounds(name, getattr(follow.profile, name), PROFILE_BOUNDS)
        if problem:
            return problem
    return None
