"""The Avantis pair catalogue: fees, leverage limits, minimum position, loss protection.

Read from a snapshot in the shape of `avantis_trader_sdk`'s `trading_snapshot.json` (the real one
lives in ../shared/data/avantis/), or from the built-in fallback of the main pairs' facts so
nothing depends on that file being present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path


class UnknownPair(KeyError):
    pass


@dataclass(frozen=True)
class Pair:
    index: int
    symbol: str  # "BTC/USD"
    open_fee_ppm: int  # of notional; 0.045 % = 450
    close_fee_ppm: int
    min_leverage: Decimal
    max_leverage: Decimal
    min_position_usdc: int  # minimum notional (collateral × leverage), micro-USDC
    max_gain_pct: int
    # Loss protection by tier: the percent of a loss the trader still pays (100 = none forgiven).
    loss_protection_pct: dict[int, int] = field(default_factory=lambda: {0: 100})
    rollover_ppm_per_hour: int = 0  # margin/borrow fee on notional, parts per million per hour
    group_index: int = 0

    def loss_pct(self, tier: int) -> int:
        return self.loss_protection_pct.get(tier, 100)


def _pct_to_ppm(percent: float | int | str) -> int:
    return int(Decimal(str(percent)) * 10_000)


_FALLBACK = [
    # index, symbol, max leverage, group — crypto majors: 0.045 % fees, 100 USDC minimum, 8 % loss protection at tiers 1–3.
    (0, "ETH/USD", 75, 0),
    (1, "BTC/USD", 75, 0),
    (2, "SOL/USD", 75, 1),
]


def builtin_catalogue() -> dict[int, Pair]:
    return {
        index: Pair(
            index=index,
            symbol=symbol,
            open_fee_ppm=450,
            close_fee_ppm=450,
            min_leverage=Decimal(1),
            max_leverage=Decimal(max_lev),
            min_position_usdc=100_000_000,
            max_gain_pct=2500,
            loss_protection_pct={0: 100, 1: 92, 2: 92, 3: 92},
            rollover_ppm_per_hour=17,
            group_index=group,
        )
        for index, symbol, max_lev, group in _FALLBACK
    }


def load_catalogue(path: Path | None) -> dict[int, Pair]:
    """Pairs from a snapshot file when it exists, else the built-in main pairs."""
    if path is None or not path.exists():
        return builtin_catalogue()
    doc = json.loads(path.read_text())
    pairs = {}
    for key, info in doc["pairInfos"].items():
        if not info.get("isPairListed", True):
            continue
        lp = {
            int(tier): 100 - int(v) for tier, v in (info.get("lossProtectionMultiplier") or {"0": 0}).items()
        }
        margin_fee_pct_per_hour = (info.get("marginFee") or {}).get("long", 0)
        pairs[int(key)] = Pair(
            index=int(key),
            symbol=f"{info['from']}/{info['to']}",
            open_fee_ppm=_pct_to_ppm(info.get("openFeeP", 0.045)),
            close_fee_ppm=_pct_to_ppm(info.get("closeFeeP", 0.045)),
            min_leverage=Decimal(str(info["leverages"]["minLeverage"])),
            max_leverage=Decimal(str(info["leverages"]["maxLeverage"])),
            min_position_usdc=int(
                Decimal(str(info.get("minLevPosUSDC", info.get("pairMinLevPosUSDC", 100)))) * 1_000_000
            ),
            max_gain_pct=int(info["values"]["maxGainP"]),
            loss_protection_pct=lp,
            rollover_ppm_per_hour=_pct_to_ppm(margin_fee_pct_per_hour),
            group_index=int(info.get("groupIndex", 0)),
        )
    return pairs


def pair_by_symbol(catalogue: dict[int, Pair], symbol: str) -> Pair:
    for pair in catalogue.values():
        if pair.symbol == symbol:
            return pair
    raise UnknownPair(symbol)
