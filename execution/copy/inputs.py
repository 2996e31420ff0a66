"""What people ask the copy service for, as they typed it, and the checks it must pass before
anything is written: addresses, finite numbers inside the bounds the engine and the database's
CHECK constraints share, choices with their options listed, the amount each sizing mode needs.
A refusal is one `CopyError` naming the field, with a message for people."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from execution.copy.model import FOLLOW_BOUNDS, PROFILE_BOUNDS, FollowConfig, SizingMode
from execution.venues.base import VenueName
from execution.venues.factory import VenueConfigError, venue_name

ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
BIGINT_MAX = 2**63 - 1
SIDES = ("both", "long", "short")
# Decimal places each setting's column keeps (more would be silently rounded: refused instead).
PLACES = {"pct": 6, "multiplier": 6, "leverage_cap": 10, "max_drawdown_pct": 4}


class CopyError(Exception):
    """A request the service refuses: `field` is the input at fault, `problem` says why, for people."""

    def __init__(self, problem: str, field: str | None = None):
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Actor:
    """Who asks: a Telegram user (by their Telegram id), or the operator (None)."""

    telegram_user_id: int | None = None

    @classmethod
    def operator(cls) -> Actor:
        return cls(None)

    @classmethod
    def user(cls, telegram_user_id: int | str) -> Actor:
        return cls(telegram_id(telegram_user_id))

    @property
    def is_operator(self) -> bool:
        return self.telegram_user_id is None


# --- inputs, as people type them ------------------------------------------------------------------


@dataclass
class ProfileInput:
    """A profile's settings as typed (strings are parsed and checked here). None: not given."""

    name: str = "default"
    venue: str = "paper"
    wallet: str | None = None
    equity: str | None = None  # USDC
    daily_loss_limit: str | None = None  # USDC
    max_drawdown_pct: str | None = None
    max_total_exposure: str | None = None  # USDC


@dataclass
class FollowInput:
    mode: str = "fixed"
    fixed: str | None = None  # USDC per trade
    pct: str | None = None  # percent of equity per trade
    multiplier: str | None = None  # of the leader's collateral
    cap: str | None = None  # USDC per trade at most
    leverage_cap: str | None = None
    max_position: str | None = None  # USDC notional
    side: str = "both"
    reverse: bool = False
    copy_tp_sl: bool = True
    copy_existing: bool = False
    slippage_bps: str | int = 50
    regime_guard: bool = False
    allow: Sequence[int | str] = ()
    block: Sequence[int | str] = ()


# --- parsing and checking ---------------------------------------------------------------------------


def telegram_id(value: int | str) -> int:
    text = str(value).strip()
    if not re.fullmatch(r"\d{1,19}", text) or not 0 < int(text) <= BIGINT_MAX:
        raise CopyError(f"{text!r} is not a Telegram user id (a positive whole number)", "user")
    return int(text)


def record_id(value: int | str, what: str) -> int:
    text = str(value).strip()
    if not re.fullmatch(r"\d{1,19}", text) or not 0 < int(text) <= BIGINT_MAX:
        raise CopyError(f"no such {what} {text}", what)
    return int(text)


def parse_address(value: str | None, name: str) -> str:
    text = (value or "").strip()
    if not ADDRESS.fullmatch(text):
        shown = text if len(text) <= 50 else text[:47] + "..."
        raise CopyError(f"{shown!r} is not a 0x address (0x and 40 hex digits)", name)
    return text.lower()


def _number(value: object, name: str) -> Decimal:
    text = str(value).strip()
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        raise CopyError(f"{text[:40]!r} is not a number", name) from None
    if not number.is_finite():
        raise CopyError(f"{text!r} is not a finite number", name)
    return number


def _in_range(
    number: Decimal, name: str, low: Decimal, high: Decimal, unit: str, *, more_than_zero: bool
) -> None:
    if more_than_zero and number <= 0:
        raise CopyError(f"{number} must be more than 0{unit}", name)
    if number < low:
        raise CopyError(f"{number} must be at least {low.normalize()}{unit}", name)
    if number > high:
        raise CopyError(f"{number} is more than the {high.normalize():,f}{unit} allowed", name)


def _usdc(value: str | None, name: str, bound: tuple[Decimal, Decimal]) -> int | None:
    """USDC as typed → micro-USDC, inside `bound` (micro-USDC)."""
    if value is None:
        return None
    number = _number(value, name)
    low, high = (b / 10**6 for b in bound)
    _in_range(number, name, low, high, " USDC", more_than_zero=bound[0] > 0)
    if number != number.quantize(Decimal("0.000001")):
        raise CopyError(f"{number} USDC has more than 6 decimals", name)
    return int(number * 10**6)


def _decimal(value: str | None, name: str, bound: tuple[Decimal, Decimal], unit: str = "") -> Decimal | None:
    if value is None:
        return None
    number = _number(value, name)
    _in_range(number, name, *bound, unit, more_than_zero=bound[0] > 0)
    places = PLACES.get(name)
    if places is not None and number != number.quantize(Decimal(1).scaleb(-places)):
        raise CopyError(f"{number} has more than {places} decimals", name)
    return number


def _int(value: object, name: str, low: int, high: int) -> int:
    text = str(value).strip()
    if not re.fullmatch(r"-?\d{1,19}", text) or not low <= int(text) <= high:
        raise CopyError(f"{text[:40]!r} is not a whole number from {low} to {high}", name)
    return int(text)


def _choice(value: str, name: str, choices: Sequence[str]) -> str:
    text = (value or "").strip().lower()
    if text not in choices:
        raise CopyError(f"{value!r} is not one of: {', '.join(choices)}", name)
    return text


def parse_venue(value: str | VenueName) -> VenueName:
    """A venue's name as typed → `VenueName` (a `CopyError` naming the choices otherwise)."""
    try:
        return venue_name(str(value or ""))
    except VenueConfigError as exc:
        raise CopyError(str(exc), "venue") from None


def follow_config(f: FollowInput) -> FollowConfig:
    """A follow's settings, checked: each amount in its range, the one its mode needs given,
    none that its mode would ignore."""
    mode = SizingMode(_choice(f.mode, "mode", [m.value for m in SizingMode]))
    config = FollowConfig(
        sizing_mode=mode,
        fixed_collateral_usdc=_usdc(f.fixed, "fixed", FOLLOW_BOUNDS["fixed_collateral_usdc"]),
        equity_pct=_decimal(f.pct, "pct", FOLLOW_BOUNDS["equity_pct"], " %"),
        multiplier=_decimal(f.multiplier, "multiplier", FOLLOW_BOUNDS["multiplier"]),
        per_trade_cap_usdc=_usdc(f.cap, "cap", FOLLOW_BOUNDS["per_trade_cap_usdc"]),
        leverage_cap=_decimal(f.leverage_cap, "leverage_cap", FOLLOW_BOUNDS["leverage_cap"], "x"),
        max_position_usdc=_usdc(f.max_position, "max_position", FOLLOW_BOUNDS["max_position_usdc"]),
        pair_allow=frozenset(_int(p, "allow", 0, 2**31 - 1) for p in f.allow) if f.allow else None,
        pair_block=frozenset(_int(p, "block", 0, 2**31 - 1) for p in f.block),
        side_filter=_choice(f.side, "side", SIDES),
        reverse=bool(f.reverse),
        copy_tp_sl=bool(f.copy_tp_sl),
        copy_existing=bool(f.copy_existing),
        slippage_bps=_int(f.slippage_bps, "slippage_bps", 0, 10_000),
        regime_guard=bool(f.regime_guard),
    )
    amounts = {SizingMode.FIXED: "fixed", SizingMode.EQUITY_PCT: "pct", SizingMode.MULTIPLIER: "multiplier"}
    given = {"fixed": f.fixed, "pct": f.pct, "multiplier": f.multiplier}
    needed = amounts.get(mode)
    if needed is not None and given[needed] is None:
        raise CopyError(f"{mode.value} sizing needs its amount", needed)
    for name, value in given.items():
        if value is not None and name != needed:
            raise CopyError(
                f"applies to {next(m for m, n in amounts.items() if n == name).value} sizing, not {mode.value}",
                name,
            )
    return config


def profile_values(p: ProfileInput) -> dict[str, Any]:
    """The given (not None) settings of a profile, checked, as `copytrader_profiles` columns."""
    values: dict[str, Any] = {}
    if p.wallet is not None:
        values["wallet_address"] = parse_address(p.wallet, "wallet")
    if p.equity is not None:
        values["equity_usdc"] = _usdc(p.equity, "equity", PROFILE_BOUNDS["equity_usdc"])
    if p.daily_loss_limit is not None:
        values["daily_loss_limit_usdc"] = _usdc(
            p.daily_loss_limit, "daily_loss_limit", PROFILE_BOUNDS["daily_loss_limit_usdc"]
        )
    if p.max_drawdown_pct is not None:
        values["max_drawdown_pct"] = _decimal(
            p.max_drawdown_pct, "max_drawdown_pct", PROFILE_BOUNDS["max_drawdown_pct"], " %"
        )
    if p.max_total_exposure is not None:
        values["max_total_exposure_usdc"] = _usdc(
            p.max_total_exposure, "max_total_exposure", PROFILE_BOUNDS["max_total_exposure_usdc"]
        )
    return values


def profile_name(name: str | None) -> str:
    text = (name or "").strip()
    if not 1 <= len(text) <= 64 or not text.isprintable():
        raise CopyError(f"{text[:40]!r} is not a profile name (1 to 64 printable characters)", "profile")
    return text


def needs_wallet(venue: VenueName, wallet: str | None) -> None:
    if venue is not VenueName.PAPER and wallet is None:
        raise CopyError(f"the {venue.value} venue needs the follower's 0x wallet address", "wallet")


def needs_equity(config: FollowConfig, equity_usdc: int | None) -> None:
    if config.sizing_mode in (SizingMode.EQUITY_PCT, SizingMode.PROPORTIONAL) and not equity_usdc:
        raise CopyError(
            f"{config.sizing_mode.value} sizing needs the profile's equity (more than 0 USDC)", "equity"
        )
