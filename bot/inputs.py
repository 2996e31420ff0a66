"""What people type, turned into exact values or a friendly sentence saying what was expected.

Every prompt of every flow parses through here: amounts become `Decimal` (never float), pair
names are looked up in the pair catalogue, addresses are checked (EIP-55 checksum when written in
mixed case). Whatever a parser returns is a plain value; it reaches SQL only as a bind parameter
inside the copy service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from eth_utils import is_checksum_address, to_checksum_address

from data.pairs import Pair

NONE_WORDS = frozenset({"none", "no", "no limit", "nolimit", "off", "-", "skip", "unlimited", "any", "all"})
_NUMBER = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,31}$")


class InputError(ValueError):
    """A typed value we cannot use; the message is written for the person who typed it."""


@dataclass(frozen=True)
class Range:
    low: Decimal
    high: Decimal
    unit: str = ""
    low_inclusive: bool = True

    def check(self, value: Decimal) -> Decimal:
        below = value < self.low if self.low_inclusive else value <= self.low
        if below or value > self.high:
            lo = "from" if self.low_inclusive else "above"
            raise InputError(f"Please send a number {lo} {_show(self.low)} to {_show(self.high)}{self.unit}.")
        return value


def _show(d: Decimal) -> str:
    return f"{d.normalize():,f}"


def is_none(text: str) -> bool:
    return text.strip().lower() in NONE_WORDS


def number(text: str, within: Range, *, max_decimals: int = 6, what: str = "a number") -> Decimal:
    """A decimal number: '1,000', '250.5', '12 USDC', '2.5%' and '10x' are understood."""
    raw = text.strip().lower()
    for suffix in ("usdc", "usd", "$", "%", "x", "bps", "bp"):
        if raw.endswith(suffix):
            raw = raw[: -len(suffix)].strip()
    raw = raw.lstrip("$").strip()
    if not raw or not _NUMBER.match(raw) or raw in {"+", "-", "."}:
        raise InputError(f"That doesn't look like {what}. Please send digits only, for example 250 or 12.5.")
    try:
        value = Decimal(raw.replace(",", ""))
    except InvalidOperation:
        raise InputError(
            f"That doesn't look like {what}. Please send digits only, for example 250."
        ) from None
    if not value.is_finite():
        raise InputError(f"That doesn't look like {what}.")
    if -value.as_tuple().exponent > max_decimals:  # type: ignore[operator]
        raise InputError(f"Please use at most {max_decimals} decimal places.")
    return within.check(value)


def optional_number(text: str, within: Range, **kw: object) -> Decimal | None:
    """A number, or None when the person says there is no limit ('none', 'no limit', 'skip')."""
    if is_none(text):
        return None
    return number(text, within, **kw)  # type: ignore[arg-type]


def address(text: str) -> str:
    """An EVM address, returned checksummed. A mixed-case address must have a valid checksum
    (a typo in one is caught rather than sending copies to the wrong wallet)."""
    raw = text.strip()
    if not _ADDRESS.match(raw):
        raise InputError(
            "That isn't a wallet address. It starts with 0x followed by 40 characters 0-9 and a-f, "
            "for example 0x52908400098527886E0F7030069857D2E4169EE7."
        )
    if raw != raw.lower() and raw[2:] != raw[2:].upper() and not is_checksum_address(raw):
        raise InputError(
            "That address has a typo: its capital letters don't match its checksum. Please copy it again."
        )
    return to_checksum_address(raw)


def profile_name(text: str) -> str:
    name = " ".join(text.split())
    if not _NAME.match(name):
        raise InputError(
            "A profile name is 1 to 32 letters, digits, spaces, - or _, starting with a letter or digit "
            "(for example: main, safe-btc)."
        )
    return name


def pairs(text: str, catalogue: dict[int, Pair]) -> list[int]:
    """Pair names separated by commas or spaces: 'BTC, eth/usd, SOL'. Returns pair indexes."""
    by_name: dict[str, int] = {}
    for pair in catalogue.values():
        base, _, quote = pair.symbol.partition("/")
        by_name[pair.symbol.upper()] = pair.index
        by_name[base.upper()] = pair.index
        by_name[f"{base}{quote}".upper()] = pair.index
        by_name[f"{base}-{quote}".upper()] = pair.index
    names = [n for n in re.split(r"[,\s;]+", text.strip()) if n]
    if not names:
        raise InputError("Please send one or more pair names, for example: BTC, ETH/USD.")
    found, unknown = [], []
    for n in names:
        index = by_name.get(n.upper())
        if index is None:
            unknown.append(n)
        elif index not in found:
            found.append(index)
    if unknown:
        sample = ", ".join(sorted(p.symbol for p in catalogue.values())[:6])
        raise InputError(
            f"I don't know the pair{'s' if len(unknown) > 1 else ''} {', '.join(unknown)[:100]}. "
            f"Pairs look like {sample}."
        )
    return found


def choice(text: str, options: dict[str, str]) -> str:
    """One of a few words ('long', 'short', 'both'); `options` maps accepted words to values."""
    value = options.get(text.strip().lower())
    if value is None:
        raise InputError("Please pick one of: " + ", ".join(sorted(set(options))) + " (or use the buttons).")
    return value
