"""The Avantis close formula in exact integer arithmetic, the way the contracts compute it.

    gross      = collateral_closed * percentProfit / 1e10 / 100, percentProfit capped at -100% / +maxGain
    gross      = gross * lossProtectionMultiplier / 100           when gross < 0
    closingFee = closeFeeP * (collateral_closed * leverage + gross)
    usdcSent   = collateral_closed + gross - closingFee - rollover  (0 once below the liquidation threshold)

Solidity divides integers toward zero; so does this module, so a simulated close is one the
real contracts could have produced and the ledger reconciles it to the micro-USDC.
"""

from __future__ import annotations

from dataclasses import dataclass

from data.events import Side
from data.units import E10, tdiv

PPM = 1_000_000
# Avantis fees are quoted in percent with 10 decimals on chain; we carry them as parts per million
# of notional (0.045 % = 450 ppm), which represents every fee in the catalogue exactly.
DEFAULT_CLOSE_FEE_PPM = 450
DEFAULT_OPEN_FEE_PPM = 450
LIQUIDATION_THRESHOLD_PCT = 90  # liquidated once the loss reaches 90 % of the collateral


def percent_profit_e10(
    open_price_e10: int, close_price_e10: int, leverage_e10: int, side: Side, max_gain_pct: int
) -> int:
    """PnL as percent of collateral, ×1e10, capped like the contracts cap it."""
    move = (close_price_e10 - open_price_e10) if side is Side.LONG else (open_price_e10 - close_price_e10)
    pct = tdiv(tdiv(move * 100 * E10, open_price_e10) * leverage_e10, E10)
    return max(-100 * E10, min(pct, max_gain_pct * E10))


def open_fee(collateral_usdc: int, leverage_e10: int, fee_ppm: int = DEFAULT_OPEN_FEE_PPM) -> int:
    """Opening fee charged on notional, taken out of the deposited collateral."""
    return collateral_usdc * leverage_e10 // E10 * fee_ppm // PPM


@dataclass(frozen=True, slots=True)
class CloseOutcome:
    gross_usdc: int  # after loss protection
    loss_protection_usdc: int  # part of the loss forgiven
    closing_fee_usdc: int
    rollover_usdc: int
    usdc_sent: int
    liquidated: bool


def close_outcome(
    collateral_closed: int,
    leverage_e10: int,
    open_price_e10: int,
    close_price_e10: int,
    side: Side,
    *,
    rollover_usdc: int = 0,
    close_fee_ppm: int = DEFAULT_CLOSE_FEE_PPM,
    loss_protection_pct: int = 100,
    max_gain_pct: int = 500,
) -> CloseOutcome:
    if collateral_closed <= 0 or leverage_e10 <= 0 or open_price_e10 <= 0 or close_price_e10 <= 0:
        raise ValueError("collateral, leverage and prices must be positive")
    if not 0 < loss_protection_pct <= 100:
        raise ValueError("loss protection multiplier is a percent in (0, 100]")
    pct = percent_profit_e10(open_price_e10, close_price_e10, leverage_e10, side, max_gain_pct)
    raw_gross = tdiv(collateral_closed * pct, E10 * 100)
    gross = tdiv(raw_gross * loss_protection_pct, 100) if raw_gross < 0 else raw_gross
    notional = collateral_closed * leverage_e10 // E10
    fee = max(0, (notional + gross) * close_fee_ppm // PPM)
    remaining = collateral_closed + gross - rollover_usdc
    if remaining * 100 <= collateral_closed * (100 - LIQUIDATION_THRESHOLD_PCT):
        # The whole collateral is lost: nothing is sent, the fee is what the protocol keeps.
        return CloseOutcome(gross, gross - raw_gross, max(0, remaining), rollover_usdc, 0, True)
    sent = remaining - fee
    return CloseOutcome(gross, gross - raw_gross, fee, rollover_usdc, sent, False)


def liquidation_price_e10(
    open_price_e10: int, leverage_e10: int, side: Side, rollover_usdc: int = 0, collateral_usdc: int = 1
) -> int:
    """The price at which the loss reaches the liquidation threshold (ignoring fees accrued later)."""
    loss_frac_e10 = LIQUIDATION_THRESHOLD_PCT * E10 // 100 - (rollover_usdc * E10 // max(collateral_usdc, 1))
    move = open_price_e10 * loss_frac_e10 // leverage_e10
    return open_price_e10 - move if side is Side.LONG else open_price_e10 + move
