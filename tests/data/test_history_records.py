"""Closed-trade records checked where they enter: each malformed input and the message it gets."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from data.sources.veranta_history.records import RecordError, load_file, parse_trade

TRADER = "0xd49C1dC7f12D56FD34c0148F47ECdCaaCBe9f78C"
GOOD = {
    "time": "2026-05-05T22:07:57.000Z",
    "gross": Decimal("611.3200239999999"),
    "pairIndex": Decimal(51),
    "symbol": "EIGEN/USD",
    "index": Decimal(0),
    "buy": False,
    "leverage": Decimal("1.1440392597"),
    "openPrice": Decimal("0.218525162"),
    "tp": Decimal("0.0004"),
    "sl": Decimal(0),
    "collateral": Decimal("4360.645806"),
    "positionSize": Decimal("4360.645806"),
    "closePrice": Decimal("0.19174715"),
    "usdcSent": Decimal("4969.285082"),
    "openedAt": Decimal(1778016429),
    "closingFee": Decimal("2.520031"),
    "funding": Decimal("0.160717"),
}


def test_a_good_record_parses_exactly() -> None:
    t = parse_trade(TRADER, GOOD)
    assert t.trader == TRADER.lower() and t.pair_index == 51 and t.closed_at == 1778018877
    assert t.leverage == Decimal("1.1440392597") and t.side.value == "short"


DEEP: object = 0
for _ in range(200):
    DEEP = [DEEP]

# (field, value, the message's distinguishing part)
BAD_FIELDS = [
    ("leverage", Decimal("1e25"), "leverage 1E+25 is outside [0, 1000]"),
    ("leverage", Decimal(0), "leverage, openPrice and closePrice must be positive"),
    ("leverage", -1, "leverage -1 is outside [0, 1000]"),
    ("leverage", "NaN", "leverage is not finite"),
    ("leverage", "Infinity", "leverage is not finite"),
    ("leverage", True, "leverage is not a number: True"),
    ("leverage", 1.5, "leverage is not a number: 1.5"),
    ("leverage", "abc", "leverage is not a number: 'abc'"),
    ("leverage", "1" * 65, "leverage is not a number"),
    ("leverage", DEEP, "leverage is not a number: a JSON array"),
    ("leverage", {"a": 1}, "leverage is not a number: a JSON object"),
    ("collateral", Decimal("1e15"), "collateral 1E+15 is outside [0, 1000000000]"),
    ("positionSize", Decimal("5000"), "positionSize 5000 must be positive and at most the collateral"),
    ("openPrice", Decimal("-0.2"), "openPrice -0.2 is outside"),
    ("closePrice", Decimal("1e10"), "closePrice 1E+10 is outside"),
    ("usdcSent", Decimal(-1), "usdcSent -1 is outside"),
    ("gross", Decimal("1e13"), "gross 1E+13 is outside"),
    ("closingFee", Decimal(-1), "closingFee -1 is outside"),
    ("pairIndex", Decimal(2**31), "pairIndex 2147483648 is outside [0, 9999]"),
    ("pairIndex", Decimal("1.7"), "pairIndex must be a whole number, not 1.7"),
    ("pairIndex", "1e999999999", "pairIndex '1e999999999' is outside [0, 9999]"),
    ("pairIndex", Decimal("1e999999999"), "pairIndex 1E+999999999 is outside"),
    ("pairIndex", Decimal(-1), "pairIndex -1 is outside"),
    ("index", Decimal(-3), "index -3 is outside [0, 99999]"),
    ("openedAt", Decimal(-5), "openedAt -5 is outside"),
    ("openedAt", Decimal(1778018878), "openedAt 1778018878 is after the close"),
    ("time", "0001-01-01T00:00:00Z", "time '0001-01-01T00:00:00Z' is outside 2020-01-01 .. 2100-01-01"),
    ("time", "yesterday", "time is not an ISO-8601 time: 'yesterday'"),
    ("time", 1778018877, "time is not an ISO-8601 time: 1778018877"),
    ("time", "9999-12-31T23:59:59Z", "is outside 2020-01-01 .. 2100-01-01"),
    ("symbol", "BTC\x00/USD", "symbol must be printable text of at most 32 characters: 'BTC\\x00/USD'"),
    ("symbol", "BTC\n", "symbol must be printable text"),
    ("symbol", "X" * 33, "symbol must be printable text of at most 32 characters"),
    ("buy", "yes", "buy is not a boolean: 'yes'"),
    ("buy", None, "missing buy"),
    ("usdcSent", None, "missing usdcSent"),
]


@pytest.mark.parametrize(
    ("name", "value", "message"), BAD_FIELDS, ids=[f"{n}={str(v)[:20]}" for n, v, _ in BAD_FIELDS]
)
def test_each_bad_field_is_refused_with_its_name(name: str, value: object, message: str) -> None:
    with pytest.raises(RecordError) as err:
        parse_trade(TRADER, {**GOOD, name: value})
    assert message in str(err.value)
    assert "\n" not in str(err.value) and len(str(err.value)) < 200


@pytest.mark.parametrize("address", ["", "0x12", "'; DROP TABLE trade_events; --", "0x" + "g" * 40, 12, None])
def test_bad_trader_addresses_are_refused(address: object) -> None:
    with pytest.raises(RecordError, match="address is not a 0x address of 40 hex digits"):
        parse_trade(address, GOOD)  # type: ignore[arg-type]


def test_a_record_that_is_not_an_object() -> None:
    with pytest.raises(RecordError, match="trade is not an object: a JSON array"):
        parse_trade(TRADER, [1, 2])


FILES = [
    (b"\xff\xfe{}", "not UTF-8 (byte 0"),
    (b'{"address": "0x12", "trades": []}', "address is not a 0x address of 40 hex digits: '0x12'"),
    (
        b'{"address": "' + TRADER.encode() + b'", "trades": 5}',
        "expected an object with 'address' and a 'trades' list",
    ),
    (b"[1, 2", "not JSON: Expecting"),
    (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
    (b'{"address": "' + TRADER.encode() + b'", "trades": [], "count": ' + b"9" * 5000 + b"}", ""),
]


@pytest.mark.parametrize(
    ("content", "message"), FILES, ids=["bytes", "address", "trades", "truncated", "deep", "bigint"]
)
def test_unreadable_files_get_one_line_naming_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    if not message:  # a huge integer where it is not used is no error
        assert load_file(path) == (TRADER.lower(), [])
        return
    with pytest.raises(RecordError) as err:
        load_file(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_byte_order_mark_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"address": TRADER, "trades": []}).encode())
    assert load_file(path) == (TRADER.lower(), [])
