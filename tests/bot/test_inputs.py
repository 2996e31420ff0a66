"""What people type at the bot's prompts: exact values out, or a sentence saying what was expected;
and the plain warning beside a record too short to tell skill from luck."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot import inputs
from bot.inputs import InputError, Range
from data.pairs import builtin_catalogue

USDC = Range(Decimal(1), Decimal(1_000_000), " USDC")


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        ("100", "100"),
        ("1,000", "1000"),
        ("12.5 USDC", "12.5"),
        ("$250", "250"),
        ("2.5%", "2.5"),
        ("10x", "10"),
    ],
)
def test_numbers_people_write_are_read_exactly(typed: str, value: str) -> None:
    got = inputs.number(typed, USDC)
    assert got == Decimal(value) and isinstance(got, Decimal)


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("abc", "doesn't look like"),
        ("1e9", "doesn't look like"),
        ("NaN", "doesn't look like"),
        ("", "doesn't look like"),
        ("0.5", "from 1 to 1,000,000"),
        ("-3", "from 1 to 1,000,000"),
        ("2,000,000", "from 1 to 1,000,000"),
        ("1.1234567", "at most 6 decimal places"),
        ("'; DROP TABLE users; --", "doesn't look like"),
    ],
)
def test_nonsense_numbers_get_a_sentence_not_a_crash(typed: str, says: str) -> None:
    with pytest.raises(InputError, match=says):
        inputs.number(typed, USDC)


def test_no_limit_words() -> None:
    assert inputs.optional_number("none", USDC) is None
    assert inputs.optional_number("No limit", USDC) is None
    assert inputs.optional_number("50", USDC) == Decimal(50)


def test_addresses_are_checksummed_and_typos_caught() -> None:
    lower = "0x52908400098527886e0f7030069857d2e4169ee7"
    assert inputs.address(lower) == "0x52908400098527886E0F7030069857D2E4169EE7"
    with pytest.raises(InputError, match="typo"):
        inputs.address("0x52908400098527886E0F7030069857D2E4169Ee7")
    for bad in (
        "0x123",
        "52908400098527886e0f7030069857d2e4169ee7",
        "0xZZ908400098527886e0f7030069857d2e4169ee7",
    ):
        with pytest.raises(InputError, match="isn't a wallet address"):
            inputs.address(bad)


def test_pair_names_in_the_forms_people_use() -> None:
    catalogue = builtin_catalogue()
    assert inputs.pairs("btc, ETH/USD sol", catalogue) == [1, 0, 2]
    assert inputs.pairs("BTC-USD;btcusd", catalogue) == [1]
    with pytest.raises(InputError, match="don't know the pair DOGE"):
        inputs.pairs("BTC, DOGE", catalogue)


def test_profile_names() -> None:
    assert inputs.profile_name("  safe   btc ") == "safe btc"
    for bad in ("", "x" * 33, "<b>hi</b>", "-lead"):
        with pytest.raises(InputError):
            inputs.profile_name(bad)


def test_the_too_short_to_tell_warning() -> None:
    from bot.views.alfa import too_short

    assert too_short(None, None, 30) == "⚠️ Not enough record to tell skill from luck."
    assert "not above zero" in (too_short(1_000_000, 0.37, 30) or "")
    assert "about 62 days" in (too_short(61.7, 0.91, 30) or "") and "we have 30" in (
        too_short(61.7, 0.91, 30) or ""
    )
    assert too_short(12.0, 0.99, 30) is None
