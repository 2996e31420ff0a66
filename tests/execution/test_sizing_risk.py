"""Table-driven: each sizing mode (rounding at the venue minimum and the leverage cap included)
and each refusal reason of the risk engine."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from data.events import EventKind, Side
from execution.copy.model import Follow, FollowConfig, Profile, Refusal, SizedOpen, SizingMode
from execution.copy.risk import Facts, check_close, check_open
from execution.copy.sizing import close_amount
from tests.execution.copy_fixtures import BTC, CATALOGUE, leader_event

NOW = 1_800_000_000
PROFILE = Profile(1, 1, "paper", 10_000_000_000, 10_000_000_000, None, None, None)
OPEN = leader_event(EventKind.OPEN, collateral=1_000_000_000, leverage="10", ts=NOW, open_ts=NOW)
FACTS = Facts(NOW * 1000, 500, False, Decimal(60_000), 0, 0, leader_equity_usdc=50_000_000_000)


def follow(profile: Profile = PROFILE, **config: object) -> Follow:
    base = {"sizing_mode": SizingMode.FIXED, "fixed_collateral_usdc": 100_000_000}
    return Follow(7, profile, FollowConfig(**{**base, **config}), OPEN.trader, NOW - 60)


SIZING = [
    ("fixed", {}, SizedOpen(Side.LONG, 100_000_000, Decimal(10))),
    (
        "equity_pct 2.5 %",
        {"sizing_mode": SizingMode.EQUITY_PCT, "equity_pct": Decimal("2.5")},
        SizedOpen(Side.LONG, 250_000_000, Decimal(10)),
    ),
    # the leader put 1,000 of 50,000 USDC in: 2 % of the follower's 10,000
    (
        "proportional",
        {"sizing_mode": SizingMode.PROPORTIONAL},
        SizedOpen(Side.LONG, 200_000_000, Decimal(10)),
    ),
    (
        "multiplier 0.333",
        {"sizing_mode": SizingMode.MULTIPLIER, "multiplier": Decimal("0.333")},
        SizedOpen(Side.LONG, 333_000_000, Decimal(10)),
    ),
    (
        "multiplier rounds down",
        {"sizing_mode": SizingMode.MULTIPLIER, "multiplier": Decimal("0.0000001234567")},
        Refusal.BELOW_VENUE_MINIMUM,
    ),
    (
        "per-trade cap",
        {"sizing_mode": SizingMode.MULTIPLIER, "multiplier": Decimal(2), "per_trade_cap_usdc": 700_000_000},
        SizedOpen(Side.LONG, 700_000_000, Decimal(10)),
    ),
    (
        "leverage cap",
        {"leverage_cap": Decimal("3.33333333333")},
        SizedOpen(Side.LONG, 100_000_000, Decimal("3.3333333333")),
    ),
    # 30 USDC x 3.3333333333 = 99.999999999 USDC notional: under the 100 USDC minimum, refused
    (
        "cap pushes under the minimum",
        {"fixed_collateral_usdc": 30_000_000, "leverage_cap": Decimal("3.3333333333")},
        Refusal.BELOW_VENUE_MINIMUM,
    ),
    (
        "exactly the minimum",
        {"fixed_collateral_usdc": 10_000_000},
        SizedOpen(Side.LONG, 10_000_000, Decimal(10)),
    ),
    ("reverse copy", {"reverse": True}, SizedOpen(Side.SHORT, 100_000_000, Decimal(10))),
]


@pytest.mark.parametrize(("name", "config", "expected"), SIZING, ids=[s[0] for s in SIZING])
def test_sizing_modes(name: str, config: dict, expected: object) -> None:
    assert check_open(follow(**config), OPEN, CATALOGUE[BTC], FACTS) == expected


def test_leverage_is_capped_by_the_pair_maximum() -> None:
    wild = replace(OPEN, leverage=Decimal(400))
    sized = check_open(follow(), wild, CATALOGUE[BTC], FACTS)
    assert isinstance(sized, SizedOpen) and sized.leverage == CATALOGUE[BTC].max_leverage


REFUSALS = [
    (Refusal.KILL_SWITCH, {}, {"kill_switch": True}, {}),
    (Refusal.PROFILE_PAUSED, {}, {}, {"status": "paused"}),
    (Refusal.PAIR_UNKNOWN, {}, {}, {}),
    (Refusal.PAIR_BLOCKED, {"pair_block": frozenset({BTC})}, {}, {}),
    (Refusal.PAIR_NOT_ALLOWED, {"pair_allow": frozenset({0})}, {}, {}),
    (Refusal.SIDE_FILTERED, {"side_filter": "short"}, {}, {}),
    (Refusal.OPENED_BEFORE_FOLLOW, {}, {}, {}),
    (Refusal.EVENT_TOO_OLD, {}, {"now_ms": NOW * 1000 + 501}, {}),
    (Refusal.NO_PRICE, {}, {"price": None}, {}),
    (Refusal.SLIPPAGE, {"slippage_bps": 50}, {"price": Decimal("60300.01")}, {}),
    (
        Refusal.EQUITY_UNKNOWN,
        {"sizing_mode": SizingMode.EQUITY_PCT, "equity_pct": Decimal(1)},
        {},
        {"equity_usdc": None},
    ),
    (
        Refusal.LEADER_EQUITY_UNKNOWN,
        {"sizing_mode": SizingMode.PROPORTIONAL},
        {"leader_equity_usdc": None},
        {},
    ),
    (Refusal.BELOW_VENUE_MINIMUM, {"fixed_collateral_usdc": 9_999_999}, {}, {}),
    (Refusal.OVER_MAX_POSITION, {"max_position_usdc": 999_999_999}, {}, {}),
    (
        Refusal.OVER_TOTAL_EXPOSURE,
        {},
        {"exposure_usdc": 4_500_000_000},
        {"max_total_exposure_usdc": 5_000_000_000},
    ),
    (
        Refusal.DAILY_LOSS_LIMIT,
        {},
        {"realized_today_usdc": -300_000_000},
        {"daily_loss_limit_usdc": 300_000_000},
    ),
    (Refusal.MAX_DRAWDOWN, {}, {}, {"equity_usdc": 8_000_000_000, "max_drawdown_pct": Decimal(20)}),
    (Refusal.REGIME_RED, {"regime_guard": True}, {"regime": "red"}, {}),
    (Refusal.REGIME_UNKNOWN, {"regime_guard": True}, {"regime": None}, {}),
    (Refusal.INVALID_FOLLOW_SETTINGS, {"leverage_cap": Decimal("NaN")}, {}, {}),
]


@pytest.mark.parametrize(
    ("reason", "config", "facts", "profile"), REFUSALS, ids=[r[0].value for r in REFUSALS]
)
def test_each_refusal_reason(reason: Refusal, config: dict, facts: dict, profile: dict) -> None:
    event = OPEN
    pair = CATALOGUE[BTC]
    if reason is Refusal.PAIR_UNKNOWN:
        pair = None
    if reason is Refusal.OPENED_BEFORE_FOLLOW:
        event = replace(OPEN, open_ts=NOW - 3600)
    f = follow(replace(PROFILE, **profile), **config)
    assert check_open(f, event, pair, replace(FACTS, **facts)) == reason
    # One step back from the limit passes, so each row tests its own boundary, not another check.
    if reason is Refusal.SLIPPAGE:
        assert isinstance(check_open(f, event, pair, replace(FACTS, price=Decimal(60_300))), SizedOpen)
    if reason is Refusal.EVENT_TOO_OLD:
        assert isinstance(check_open(f, event, pair, replace(FACTS, now_ms=NOW * 1000 + 500)), SizedOpen)
    if reason in (Refusal.REGIME_RED, Refusal.REGIME_UNKNOWN):  # green passes; unguarded ignores red
        assert isinstance(check_open(f, event, pair, replace(FACTS, regime="green")), SizedOpen)
        unguarded = follow(replace(PROFILE, **profile))
        assert isinstance(check_open(unguarded, event, pair, replace(FACTS, regime="red")), SizedOpen)


def test_every_open_refusal_has_a_row() -> None:
    close_only = {Refusal.NO_COPIED_POSITION, Refusal.TP_SL_NOT_COPIED, Refusal.OPEN_NOT_SEEN}
    assert {r[0] for r in REFUSALS} == set(Refusal) - close_only


def test_closes_are_mirrored_in_proportion_and_only_the_kill_switch_stops_them() -> None:
    partial = leader_event(EventKind.PARTIAL_CLOSE, collateral=1_000_000_000, closed=333_333_333)
    assert close_amount(100_000_000, partial) == 33_333_333  # rounded down, the rest stays open
    assert close_amount(100_000_000, leader_event(EventKind.LIQUIDATION)) == 100_000_000
    paused = follow(replace(PROFILE, status="paused"))
    assert check_close(paused, replace(FACTS, now_ms=NOW * 1000 + 10**9, price=None)) is None
    assert check_close(paused, replace(FACTS, kill_switch=True)) is Refusal.KILL_SWITCH
