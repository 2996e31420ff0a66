"""Event ABIs, decoding and mapping to canonical events, on logs encoded as the contracts emit them."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from eth_abi import encode

from data.events import EventKind, Side
from data.protocol.abi import EVENTS, TRADE_TYPE
from data.protocol.decode import DecodeError, Registry
from data.protocol.mapping import ChainMapper, LogContext
from tests.conftest import shared_data_or_skip

TRADER = "0x" + "ab" * 20


def facts_table() -> dict[str, list[str]]:
    """topic0s by event name, read from the facts file's table."""
    text = shared_data_or_skip("avantis-protocol.md").read_text()
    table: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        topic = re.search(r"0x[0-9a-f]{64}", line)
        if topic and len(cells) > 3:
            match = re.search(r"`(?:v1 )?(\w+)", cells[2]) or re.search(r"(\w+)", cells[2])
            name = match.group(1) if match else ""
            if name == "same":
                name = "MarketOrderInitiated"
            table.setdefault(name, []).append(topic.group(0))
    return table


# Events of the published ABIs (avantis-trader-sdk 0.8.17's abis/Trading.sol, TradingCallbacks.sol,
# TradingStorage.sol) that the facts file does not list, as canonical signatures copied from the
# ABI JSON, so a typo in data/protocol/abi.py shows as a different topic0.
PUBLISHED_BEYOND_FACTS = {
    ("SlUpdated", "callbacks"): "SlUpdated(uint256,address,uint256,uint256,uint256)",
    ("MarginUpdated", "callbacks"): "MarginUpdated(address,uint256,uint256,uint256,uint256)",
    ("SlUpdateInitiated", "trading"): "SlUpdateInitiated(address,uint256,uint256,uint256,uint256,uint256)",
    (
        "OpenLimitUpdated",
        "trading",
    ): "OpenLimitUpdated(address,uint256,uint256,uint256,uint256,uint256,uint256)",
    ("LimitOrderInitiated", "trading"): "LimitOrderInitiated(address,uint256,uint256,uint256)",
    ("FeesCharged", "trading_storage"): "FeesCharged(address,uint256,bool,uint256)",
}


def test_every_topic0_matches_the_facts_file_or_the_published_abis() -> None:
    from eth_utils import keccak

    table = facts_table()
    computed: dict[str, set[str]] = {}
    for abi in EVENTS:
        if (abi.name, abi.emitter) in PUBLISHED_BEYOND_FACTS:
            assert abi.topic0 == "0x" + keccak(text=PUBLISHED_BEYOND_FACTS[abi.name, abi.emitter]).hex()
            continue
        computed.setdefault(abi.name, set()).add(abi.topic0)
    assert {k: set(v) for k, v in table.items()} == computed
    assert len({abi.topic0 for abi in EVENTS}) == len(EVENTS) == 14 + len(PUBLISHED_BEYOND_FACTS)


def trade(index: int = 2, collateral: int = 995_500_000, ts: int = 1_700_000_000, buy: bool = True) -> tuple:
    return (TRADER, 1, index, collateral, ts, 60_000 * 10**10, buy, 10 * 10**10, 0, 55_000 * 10**10, ts)


def log(
    name: str, version: str, indexed: list[bytes], types: list[str], values: list, emitter: str | None = None
) -> tuple[list[bytes], bytes]:
    abi = next(a for a in EVENTS if a.name == name and a.version == version and emitter in (None, a.emitter))
    return [bytes.fromhex(abi.topic0[2:]), *indexed], encode(types, values)


def ctx(log_index: int, tx: str = "0x" + "11" * 32) -> LogContext:
    return LogContext(8453, tx, log_index, 100, "0x" + "22" * 32, 1_700_000_100)


def test_decode_market_executed_v15_and_v1() -> None:
    reg = Registry()
    topics, data = log(
        "MarketExecuted",
        "1.5",
        [],
        ["uint256", TRADE_TYPE, "bool", "uint256", "uint256", "int256", "uint256", "bool"],
        [7, trade(), True, 60_000 * 10**10, 995_500_000, 0, 0, False],
    )
    d = reg.decode(topics, data)
    assert (d.name, d.version) == ("MarketExecuted", "1.5")
    assert (
        d.fields["t"]["trader"] == TRADER
        and d.fields["t"]["leverage"] == 10 * 10**10
        and d.fields["open"] is True
    )
    topics, data = log(
        "MarketExecuted",
        "1",
        [],
        ["uint256", TRADE_TYPE, "bool", "uint256", "uint256", "int256", "uint256"],
        [7, trade(), False, 61_000 * 10**10, 995_500_000, -5 * 10**10, 900_000_000],
    )
    d = reg.decode(topics, data)
    assert d.version == "1" and d.fields["percentProfit"] == -5 * 10**10


def test_indexed_trader_comes_from_topics() -> None:
    topics, data = log(
        "TpUpdated",
        "1.5",
        [bytes(12) + bytes.fromhex("ab" * 20)],
        ["uint256"] * 4,
        [1, 2, 70_000 * 10**10, 5],
    )
    assert Registry().decode(topics, data).fields == {
        "trader": TRADER,
        "pairIndex": 1,
        "index": 2,
        "newTp": 70_000 * 10**10,
        "timestamp": 5,
    }


def test_unknown_topic_and_bad_lengths_are_errors_not_guesses() -> None:
    reg = Registry()
    with pytest.raises(DecodeError, match="unknown topic0"):
        reg.decode([b"\x01" * 32], b"")
    topics, data = log("TpUpdated", "1.5", [bytes(32)], ["uint256"] * 4, [1, 2, 3, 4])
    with pytest.raises(DecodeError, match="data bytes"):
        reg.decode(topics, data[:-1])
    with pytest.raises(DecodeError, match="topics"):
        reg.decode(topics[:1], data)


def test_open_partial_close_and_tp_map_to_canonical_events_with_fees_joined() -> None:
    reg, mapper = Registry(), ChainMapper()
    me_types = ["uint256", TRADE_TYPE, "bool", "uint256", "uint256", "int256", "uint256", "bool"]
    opened = mapper.map(
        reg.decode(
            *log(
                "MarketExecuted",
                "1.5",
                [],
                me_types,
                [7, trade(), True, 60_000 * 10**10, 995_500_000, 0, 0, False],
            )
        ),
        ctx(0),
    )
    assert opened is not None and opened.kind is EventKind.OPEN and opened.side is Side.LONG
    assert (opened.collateral_usdc, opened.leverage, opened.price) == (
        995_500_000,
        Decimal(10),
        Decimal(60_000),
    )
    assert opened.position_key == f"{TRADER}:1:2:1700000000"

    tx = "0x" + "33" * 32
    fees = reg.decode(
        *log(
            "FeesCharged",
            "1.5",
            [],
            ["bool", "uint256", "uint256", "int256", "uint256", "uint256", "uint256"],
            [True, 400_000_000, 10 * 10**10, 10 * 10**10, 1_234, 1_980_000, 0],
            emitter="pair_infos",
        )
    )
    assert mapper.map(fees, ctx(4, tx)) is None
    partial = mapper.map(
        reg.decode(
            *log(
                "MarketExecuted",
                "1.5",
                [],
                me_types,
                [8, trade(), False, 60_600 * 10**10, 400_000_000, 10 * 10**10, 438_000_000, False],
            )
        ),
        ctx(5, tx),
    )
    assert partial is not None and partial.kind is EventKind.PARTIAL_CLOSE
    assert (partial.size_closed_usdc, partial.usdc_sent, partial.gross_pnl_usdc) == (
        400_000_000,
        438_000_000,
        40_000_000,
    )
    assert (partial.close_fee_usdc, partial.rollover_fee_usdc) == (1_980_000, 1_234)

    tp = mapper.map(
        reg.decode(
            *log(
                "LimitExecuted",
                "1.5",
                [],
                [
                    "uint256",
                    "uint256",
                    TRADE_TYPE,
                    "uint8",
                    "uint256",
                    "uint256",
                    "int256",
                    "uint256",
                    "bool",
                ],
                [
                    9,
                    0,
                    trade(collateral=595_500_000),
                    0,
                    61_000 * 10**10,
                    595_500_000,
                    16 * 10**10,
                    690_000_000,
                    False,
                ],
            )
        ),
        ctx(9),
    )
    assert tp is not None and tp.kind is EventKind.TP and tp.close_fee_usdc == 0  # no FeesCharged in that tx
    liq = mapper.map(
        reg.decode(
            *log(
                "LimitExecuted",
                "1",
                [],
                ["uint256", "uint256", TRADE_TYPE, "uint8", "uint256", "uint256", "int256", "uint256"],
                [10, 0, trade(index=3), 2, 54_000 * 10**10, 995_500_000, -100 * 10**10, 0],
            )
        ),
        ctx(10),
    )
    assert liq is not None and liq.kind is EventKind.LIQUIDATION and liq.usdc_sent == 0


def test_tp_update_finds_the_open_timestamp_of_the_reused_index() -> None:
    reg, mapper = Registry(), ChainMapper()
    me_types = ["uint256", TRADE_TYPE, "bool", "uint256", "uint256", "int256", "uint256", "bool"]
    mapper.map(
        reg.decode(
            *log(
                "MarketExecuted",
                "1.5",
                [],
                me_types,
                [1, trade(ts=1_800_000_000), True, 1, 995_500_000, 0, 0, False],
            )
        ),
        ctx(0),
    )
    upd = mapper.map(
        reg.decode(
            *log(
                "TpUpdated",
                "1.5",
                [bytes(12) + bytes.fromhex("ab" * 20)],
                ["uint256"] * 4,
                [1, 2, 70_000 * 10**10, 1_800_000_500],
            )
        ),
        ctx(1),
    )
    assert upd is not None and upd.kind is EventKind.TP_SL_UPDATE and upd.open_ts == 1_800_000_000
    assert upd.tp == Decimal(70_000)


def test_opening_fee_sl_updates_and_callbacks_margin_update_map_to_canonical_events() -> None:
    """TradingStorage's fee joins the open of its transaction; Callbacks' SlUpdated (oracle-run)
    and MarginUpdated (the stop loss a margin update left) are TP/SL updates of the position."""
    reg, mapper = Registry(), ChainMapper()
    open_tx = "0x" + "44" * 32
    fee = reg.decode(
        *log(
            "FeesCharged",
            "1.5",
            [],
            ["address", "uint256", "bool", "uint256"],
            [TRADER, 1, True, 4_500_000],
            emitter="trading_storage",
        )
    )
    assert mapper.map(fee, ctx(0, open_tx)) is None
    opened = mapper.map(
        reg.decode(
            *log(
                "MarketExecuted",
                "1.5",
                [],
                ["uint256", TRADE_TYPE, "bool", "uint256", "uint256", "int256", "uint256", "bool"],
                [7, trade(), True, 60_000 * 10**10, 995_500_000, 0, 0, False],
            )
        ),
        ctx(1, open_tx),
    )
    assert opened is not None and opened.kind is EventKind.OPEN
    assert (opened.open_fee_usdc, opened.collateral_usdc) == (4_500_000, 995_500_000)
    indexed_trader = [bytes(12) + bytes.fromhex(TRADER[2:])]
    sl = mapper.map(
        reg.decode(
            *log(
                "SlUpdated",
                "1.5",
                indexed_trader,
                ["uint256", "uint256", "uint256", "uint256"],
                [9, 1, 2, 58_000 * 10**10],
                emitter="callbacks",
            )
        ),
        ctx(0, "0x" + "55" * 32),
    )
    assert sl is not None and sl.kind is EventKind.TP_SL_UPDATE
    assert (sl.sl, sl.order_id, sl.position_key) == (Decimal(58_000), 9, opened.position_key)
    margin_sl = mapper.map(
        reg.decode(
            *log(
                "MarginUpdated",
                "1.5",
                indexed_trader,
                ["uint256", "uint256", "uint256", "uint256"],
                [1, 2, 57_000 * 10**10, 1_700_000_500],
                emitter="callbacks",
            )
        ),
        ctx(1, "0x" + "66" * 32),
    )
    assert margin_sl is not None and margin_sl.kind is EventKind.TP_SL_UPDATE
    assert (margin_sl.sl, margin_sl.position_key) == (Decimal(57_000), opened.position_key)
