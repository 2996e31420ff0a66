"""The copy risk engine: every check a copy must pass, in a fixed order, each failing with its
own named reason. Pure: the engine gathers the facts (prices, exposure, today's PnL), this decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from data.events import TradeEvent
from data.pairs import Pair
from execution.copy.model import Follow, Refusal, SizedOpen, follow_problem
from execution.copy.sizing import copy_side, size_open


@dataclass(frozen=True)
class Facts:
    now_ms: int
    max_delay_ms: int
    kill_switch: bool
    price: Decimal | None  # the venue's current price of the pair
    exposure_usdc: int  # notional the profile has open now, across follows
    realized_today_usdc: int  # the profile's realized PnL since 00:00 UTC
    leader_equity_usdc: int | None = None
    regime: str | None = None  # the pair's market regime (green | red), None when unknown


def limits_hit(
    *,
    realized_today_usdc: int,
    daily_loss_limit_usdc: int | None,
    equity_usdc: int | None,
    peak_equity_usdc: int | None,
    max_drawdown_pct: Decimal | None,
) -> Refusal | None:
    """The profile's own stops: the day's loss limit, then the drawdown from peak equity. The
    engine asks before each open and again after each realized close (to pause the profile)."""
    if daily_loss_limit_usdc is not None and -realized_today_usdc >= daily_loss_limit_usdc:
        return Refusal.DAILY_LOSS_LIMIT
    if max_drawdown_pct is not None and peak_equity_usdc and equity_usdc is not None:
        drawdown = Decimal(peak_equity_usdc - equity_usdc) * 100 / Decimal(peak_equity_usdc)
        if drawdown >= max_drawdown_pct:
            return Refusal.MAX_DRAWDOWN
    return None


def check_open(follow: Follow, event: TradeEvent, pair: Pair | None, facts: Facts) -> SizedOpen | Refusal:
    cfg = follow.config
    if facts.kill_switch:
        return Refusal.KILL_SWITCH
    if follow_problem(follow) is not None:  # a stored value outside its bounds (NaN included)
        return Refusal.INVALID_FOLLOW_SETTINGS
    if follow.profile.status != "active":
        return Refusal.PROFILE_PAUSED
    p = follow.profile
    limit = limits_hit(
        realized_today_usdc=facts.realized_today_usdc,
        daily_loss_limit_usdc=p.daily_loss_limit_usdc,
        equity_usdc=p.equity_usdc,
        peak_equity_usdc=p.peak_equity_usdc,
        max_drawdown_pct=p.max_drawdown_pct,
    )
    if limit is not None:
        return limit
    if pair is None:
        return Refusal.PAIR_UNKNOWN
    if event.pair_index in cfg.pair_block:
        return Refusal.PAIR_BLOCKED
    if cfg.pair_allow is not None and event.pair_index not in cfg.pair_allow:
        return Refusal.PAIR_NOT_ALLOWED
    assert event.side is not None
    side = copy_side(event.side, cfg)
    if cfg.side_filter != "both" and side.value != cfg.side_filter:
        return Refusal.SIDE_FILTERED
    if not cfg.copy_existing and event.open_ts < follow.followed_at:
        return Refusal.OPENED_BEFORE_FOLLOW
    if facts.now_ms - event.ts * 1000 > facts.max_delay_ms:
        return Refusal.EVENT_TOO_OLD
    if facts.price is None or event.price is None:
        return Refusal.NO_PRICE
    moved_bps = abs(facts.price - event.price) * 10_000 / event.price
    if moved_bps > cfg.slippage_bps:
        return Refusal.SLIPPAGE
    if cfg.regime_guard and facts.regime != "green":
        return Refusal.REGIME_RED if facts.regime == "red" else Refusal.REGIME_UNKNOWN
    sized = size_open(cfg, follow.profile, event, pair, facts.leader_equity_usdc)
    if isinstance(sized, Refusal):
        return sized
    limit_total = follow.profile.max_total_exposure_usdc
    if limit_total is not None and facts.exposure_usdc + sized.notional_usdc > limit_total:
        return Refusal.OVER_TOTAL_EXPOSURE
    return sized


def check_close(follow: Follow, facts: Facts) -> Refusal | None:
    """Closes reduce risk: only the kill switch stops them (a paused profile, an old event or a
    moved price must not leave the follower holding a position the leader has left)."""
    return Refusal.KILL_SWITCH if facts.kill_switch else None
