"""Units of the Avantis contracts, converted in exactly one place.

USDC amounts are integers of 1e-6 (micro-USDC); prices, leverage, TP/SL, slippage and
percentProfit are integers of 1e-10. Everything money-like in Vanta is either such an integer or
a `Decimal`; a float never carries money.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

USDC_DECIMALS = 6
PRICE_DECIMALS = 10
MICRO = 10**USDC_DECIMALS
E10 = 10**PRICE_DECIMALS

USDC_STEP = Decimal(1).scaleb(-USDC_DECIMALS)  # one micro-USDC, as a Decimal quantum
_E10_Q = Decimal(1).scaleb(-PRICE_DECIMALS)


class UnitError(ValueError):
    """A value that cannot be expressed exactly in the unit asked for."""


def usdc_to_micro(amount: Decimal | int | str, *, exact: bool = True) -> int:
    """USDC → micro-USDC. With `exact`, more than 6 decimals is an error rather than a rounding."""
    value = Decimal(amount)
    if not value.is_finite():
        raise UnitError(f"not a finite amount: {amount!r}")
    quantized = value.quantize(USDC_STEP, rounding=ROUND_HALF_EVEN)
    if exact and quantized != value:
        raise UnitError(f"{amount} USDC has more than {USDC_DECIMALS} decimals")
    return int(quantized.scaleb(USDC_DECIMALS))


def format_usdc(micro: int, *, signed: bool = False) -> str:
    """Micro-USDC as people read it, exactly: thousands separated, cents always shown, further
    digits only when they are not zero (1_234_560_000 → "1,234.56", 1 → "0.000001"). With
    `signed`, gains carry a "+" (PnL)."""
    value = Decimal(micro).scaleb(-USDC_DECIMALS)
    exponent = value.normalize().as_tuple().exponent if micro else 0
    places = max(2, -exponent) if isinstance(exponent, int) else 2
    text = f"{value:,.{places}f}"
    return f"+{text}" if signed and micro > 0 else text


def to_e10(value: Decimal | int | str, *, exact: bool = True) -> int:
    """A price or leverage → its 1e10 integer, as the contracts store it (they truncate)."""
    d = Decimal(value)
    if not d.is_finite():
        raise UnitError(f"not a finite value: {value!r}")
    quantized = d.quantize(_E10_Q, rounding=ROUND_DOWN)
    if exact and quantized != d:
        raise UnitError(f"{value} has more than {PRICE_DECIMALS} decimals")
    return int(quantized.scaleb(PRICE_DECIMALS))


def from_e10(value: int) -> Decimal:
    return Decimal(value).scaleb(-PRICE_DECIMALS)


def tdiv(a: int, b: int) -> int:
    """Integer division toward zero (Solidity semantics), not Python's floor."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q
