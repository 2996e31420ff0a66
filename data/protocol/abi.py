"""Avantis event ABIs, one entry per (event, version), written as Solidity signatures.

The registry is keyed by topic0, computed from each signature, so a contract upgrade that adds a
field (and so changes topic0) is supported by adding one entry here: the indexer never changes.
All these events have static fields only (uints, ints, bools, addresses, the Trade tuple), so a
log decodes by slicing 32-byte words, which is what makes decoding fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import eth_abi
from eth_utils import keccak

# The Trade tuple as the contracts emit it. `initialPosToken` is collateral after the opening fee;
# the stored `positionSizeUSDC` field holds a timestamp after registration and must be ignored.
TRADE_FIELDS = (
    ("trader", "address"),
    ("pairIndex", "uint256"),
    ("index", "uint256"),
    ("initialPosToken", "uint256"),
    ("positionSizeUSDC", "uint256"),
    ("openPrice", "uint256"),
    ("buy", "bool"),
    ("leverage", "uint256"),
    ("tp", "uint256"),
    ("sl", "uint256"),
    ("timestamp", "uint256"),
)
TRADE_TYPE = "(" + ",".join(t for _, t in TRADE_FIELDS) + ")"


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # canonical ABI type; "Trade" expands to the tuple
    indexed: bool


@dataclass(frozen=True)
class EventAbi:
    name: str
    version: str
    emitter: str  # trading | callbacks | trading_storage | pair_infos
    signature: str  # as written in Solidity, with names

    @cached_property
    def params(self) -> tuple[Param, ...]:
        match = re.fullmatch(r"(\w+)\((.*)\)", self.signature.strip())
        if not match or match.group(1) != self.name:
            raise ValueError(f"bad event signature: {self.signature}")
        params = []
        for part in filter(None, (p.strip() for p in match.group(2).split(","))):
            words = part.split()
            indexed = "indexed" in words
            words = [w for w in words if w != "indexed"]
            params.append(Param(words[-1], words[0], indexed))
        return tuple(params)

    @cached_property
    def canonical(self) -> str:
        return f"{self.name}({','.join(TRADE_TYPE if p.type == 'Trade' else p.type for p in self.params)})"

    @cached_property
    def topic0(self) -> str:
        return "0x" + keccak(text=self.canonical).hex()


EVENTS: tuple[EventAbi, ...] = (
    # Callbacks
    EventAbi(
        "MarketExecuted",
        "1.5",
        "callbacks",
        "MarketExecuted(uint256 orderId, Trade t, bool open, uint256 price, uint256 positionSizeUSDC, "
        "int256 percentProfit, uint256 usdcSentToTrader, bool isPnl)",
    ),
    EventAbi(
        "MarketExecuted",
        "1",
        "callbacks",
        "MarketExecuted(uint256 orderId, Trade t, bool open, uint256 price, uint256 positionSizeUSDC, "
        "int256 percentProfit, uint256 usdcSentToTrader)",
    ),
    EventAbi(
        "LimitExecuted",
        "1.5",
        "callbacks",
        "LimitExecuted(uint256 orderId, uint256 limitIndex, Trade t, uint8 orderType, uint256 price, "
        "uint256 positionSizeUSDC, int256 percentProfit, uint256 usdcSentToTrader, bool isPnl)",
    ),
    EventAbi(
        "LimitExecuted",
        "1",
        "callbacks",
        "LimitExecuted(uint256 orderId, uint256 limitIndex, Trade t, uint8 orderType, uint256 price, "
        "uint256 positionSizeUSDC, int256 percentProfit, uint256 usdcSentToTrader)",
    ),
    EventAbi(
        "MarketOpenCanceled",
        "1.5",
        "callbacks",
        "MarketOpenCanceled(uint256 orderId, address indexed trader, uint256 pairIndex)",
    ),
    # Trading
    EventAbi(
        "MarketOrderInitiated",
        "1.5",
        "trading",
        "MarketOrderInitiated(address indexed trader, uint256 pairIndex, bool open, uint256 orderId, uint256 timestamp)",
    ),
    EventAbi(
        "MarketOrderInitiated",
        "1.5-2025-09",
        "trading",
        "MarketOrderInitiated(address indexed trader, uint256 pairIndex, bool open, uint256 orderId, "
        "uint256 timestamp, bool isBuy)",
    ),
    EventAbi(
        "MarketOrderInitiated",
        "1.5-2026-02",
        "trading",
        "MarketOrderInitiated(address indexed trader, uint256 pairIndex, bool open, uint256 orderId, "
        "uint256 timestamp, bool isBuy, bool isPnl, uint256 initialPosToken, uint256 leverage)",
    ),
    EventAbi(
        "MarginUpdated",
        "1.5",
        "trading",
        "MarginUpdated(address indexed trader, uint256 pairIndex, uint256 index, uint8 _type, Trade newTrade, "
        "uint256 marginFees, uint256 lossProtectionTier, uint256 timestamp)",
    ),
    EventAbi(
        "TpUpdated",
        "1.5",
        "trading",
        "TpUpdated(address indexed trader, uint256 pairIndex, uint256 index, uint256 newTp, uint256 timestamp)",
    ),
    EventAbi(
        "SlUpdated",
        "1.5",
        "trading",
        "SlUpdated(address indexed trader, uint256 pairIndex, uint256 index, uint256 newSl, uint256 timestamp)",
    ),
    EventAbi(
        "OpenLimitPlaced",
        "1.5",
        "trading",
        "OpenLimitPlaced(address indexed trader, uint256 pairIndex, uint256 index, bool isBuy, uint256 openPrice, "
        "uint256 executionFee, uint8 orderType, uint256 slippageP, uint256 collateral)",
    ),
    EventAbi(
        "OpenLimitCanceled",
        "1.5",
        "trading",
        "OpenLimitCanceled(address indexed trader, uint256 pairIndex, uint256 index, uint256 timestamp, "
        "uint256 collateral)",
    ),
    # Callbacks, from the published ABIs (avantis-trader-sdk 0.8.x `abis/TradingCallbacks.sol`): the
    # oracle-run outcome of an SL update, and the stop loss set after a margin update.
    EventAbi(
        "SlUpdated",
        "1.5",
        "callbacks",
        "SlUpdated(uint256 orderId, address indexed trader, uint256 pairIndex, uint256 index, uint256 newSl)",
    ),
    EventAbi(
        "MarginUpdated",
        "1.5",
        "callbacks",
        "MarginUpdated(address indexed trader, uint256 pairIndex, uint256 index, uint256 newSl, uint256 timestamp)",
    ),
    # Trading, pending orders (decoded so they are not "unknown"; they change no position).
    EventAbi(
        "SlUpdateInitiated",
        "1.5",
        "trading",
        "SlUpdateInitiated(address indexed trader, uint256 pairIndex, uint256 index, uint256 newSl, "
        "uint256 orderId, uint256 timestamp)",
    ),
    EventAbi(
        "OpenLimitUpdated",
        "1.5",
        "trading",
        "OpenLimitUpdated(address indexed trader, uint256 pairIndex, uint256 index, uint256 newPrice, "
        "uint256 newTp, uint256 newSl, uint256 timestamp)",
    ),
    EventAbi(
        "LimitOrderInitiated",
        "1.5",
        "trading",
        "LimitOrderInitiated(address indexed trader, uint256 pairIndex, uint256 orderId, uint256 timestamp)",
    ),
    # TradingStorage: the opening fee, emitted in the open's transaction before MarketExecuted.
    EventAbi(
        "FeesCharged",
        "1.5",
        "trading_storage",
        "FeesCharged(address _trader, uint256 _pairIndex, bool _buy, uint256 fee)",
    ),
    # PairInfos
    EventAbi(
        "FeesCharged",
        "1.5",
        "pair_infos",
        "FeesCharged(bool buy, uint256 collateral, uint256 leverage, int256 percentProfit, uint256 r, "
        "uint256 closingFee, uint256 lossProtection)",
    ),
)


def encode_call(name: str, types: list[str], args: list[Any]) -> bytes:
    """ABI calldata: the 4-byte selector of `name(types)` and the encoded arguments."""
    return keccak(text=f"{name}({','.join(types)})")[:4] + eth_abi.encode(types, args)
