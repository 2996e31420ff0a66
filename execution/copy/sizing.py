"""How much to copy: the four sizing modes, the per-trade cap, the leverage cap and the venue
minimum. Pure functions; every way a size cannot be decided is a `Refusal`."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from data.events import Side, TradeEvent
from data.pairs import Pair
from execution.copy.model import FollowConfig, Profile, Refusal, SizedOpen, SizingMode

LEVERAGE_STEP = Decimal("0.0000000001")  # the contracts' 1e10 leverage precision


def _floor_micro(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def copy_side(leader_side: Side, config: FollowConfig) -> Side:
    if not config.reverse:
        return leader_side
    return Side.SHORT if leader_side is Side.LONG else Side.LONG


def collateral_for(
    config: FollowConfig, profile: Profile, leader: TradeEvent, leader_equity_usdc: int | None
) -> int | Refusal:
    """The follower's collateral before caps, rounded down to the micro-USDC."""
    leader_collateral = leader.collateral_usdc or 0
    mode = config.sizing_mode
    if mode is SizingMode.FIXED:
        return config.fixed_collateral_usdc or 0
    if mode is SizingMode.MULTIPLIER:
        return _floor_micro(Decimal(leader_collateral) * (config.multiplier or Decimal(0)))
    if profile.equity_usdc is None:
        return Refusal.EQUITY_UNKNOWN
    if mode is SizingMode.EQUITY_PCT:
        return _floor_micro(Decimal(profile.equity_usdc) * (config.equity_pct or Decimal(0)) / 100)
    if leader_equity_usdc is None or leader_equity_usdc <= 0:
        return Refusal.LEADER_EQUITY_UNKNOWN
    return profile.equity_usdc * leader_collateral // leader_equity_usdc


def size_open(
    config: FollowConfig, profile: Profile, leader: TradeEvent, pair: Pair, leader_equity_usdc: int | None
) -> SizedOpen | Refusal:
    assert leader.side is not None and leader.leverage is not None
    collateral = collateral_for(config, profile, leader, leader_equity_usdc)
    if isinstance(collateral, Refusal):
        return collateral
    if config.per_trade_cap_usdc is not None:
        collateral = min(collateral, config.per_trade_cap_usdc)
    leverage = min(leader.leverage, pair.max_leverage)
    if config.leverage_cap is not None:
        leverage = min(leverage, config.leverage_cap)
    leverage = leverage.quantize(LEVERAGE_STEP, rounding=ROUND_FLOOR)
    sized = SizedOpen(copy_side(leader.side, config), collateral, leverage)
    if collateral <= 0 or leverage < pair.min_leverage or sized.notional_usdc < pair.min_position_usdc:
        return Refusal.BELOW_VENUE_MINIMUM
    if config.max_position_usdc is not None and sized.notional_usdc > config.max_position_usdc:
        return Refusal.OVER_MAX_POSITION
    return sized


def close_amount(copied_collateral_usdc: int, leader: TradeEvent) -> int:
    """The follower's collateral to close, in proportion to what the leader closed (all of it for a
    full close, TP, SL or liquidation)."""
    if leader.kind.value != "partial_close":
        return copied_collateral_usdc
    return partial_close_amount(
        copied_collateral_usdc, leader.collateral_usdc or 0, leader.size_closed_usdc or 0
    )


def partial_close_amount(
    copied_collateral_usdc: int, leader_before_usdc: int, leader_closed_usdc: int
) -> int:
    """The leader's closed share of its collateral applied to the copy, rounded down (the rest
    stays open); a share of all or more closes the copy whole."""
    if leader_before_usdc <= 0 or leader_closed_usdc >= leader_before_usdc:
        return copied_collateral_usdc
    return copied_collateral_usdc * leader_closed_usdc // leader_before_usdc
