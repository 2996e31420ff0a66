from decimal import Decimal

import pytest

from data.events import Side
from data.units import E10, tdiv, to_e10
from research.pnl import close_outcome, open_fee


def test_tdiv_truncates_toward_zero_like_solidity() -> None:
    assert tdiv(7, 2) == 3 and tdiv(-7, 2) == -3 and tdiv(7, -2) == -3 and tdiv(-7, -2) == 3


def test_winning_long_matches_the_formula_by_hand() -> None:
    # 1,000 USDC at 10x, 100 -> 101: +1 % move = +10 % = +100 USDC gross.
    out = close_outcome(1_000_000_000, 10 * E10, to_e10("100"), to_e10("101"), Side.LONG)
    assert out.gross_usdc == 100_000_000
    assert out.closing_fee_usdc == (10_000_000_000 + 100_000_000) * 450 // 1_000_000  # 4.5045 USDC
    assert out.usdc_sent == 1_000_000_000 + 100_000_000 - out.closing_fee_usdc
    assert not out.liquidated


def test_short_profits_when_price_falls_and_loss_protection_shrinks_losses() -> None:
    win = close_outcome(500_000_000, 5 * E10, to_e10("2000"), to_e10("1900"), Side.SHORT)
    assert win.gross_usdc == 125_000_000  # 5 % * 5x * 500
    loss = close_outcome(
        500_000_000, 5 * E10, to_e10("2000"), to_e10("2100"), Side.SHORT, loss_protection_pct=90
    )
    assert loss.gross_usdc == -112_500_000  # -125 * 0.9
    assert loss.loss_protection_usdc == 12_500_000


def test_liquidation_sends_nothing() -> None:
    out = close_outcome(100_000_000, 50 * E10, to_e10("100"), to_e10("98"), Side.LONG)  # -100 %
    assert out.liquidated and out.usdc_sent == 0


def test_gain_is_capped() -> None:
    out = close_outcome(100_000_000, 100 * E10, to_e10("100"), to_e10("200"), Side.LONG, max_gain_pct=500)
    assert out.gross_usdc == 500_000_000


def test_open_fee_is_on_notional() -> None:
    assert open_fee(1_000_000_000, to_e10(Decimal("2.5"))) == 1_125_000  # 0.045 % of 2,500


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        close_outcome(0, E10, E10, E10, Side.LONG)
