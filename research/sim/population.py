"""The trader population and its hidden truth.

Each trader draws hidden parameters from its archetype; the simulator acts on them and writes them
to `truth.parquet`, so any model can be scored against what was really planted.

Archetypes (default shares):
- skilled (8 %): side is right with probability 0.5 + edge on the move over the holding period;
  edges are mostly small (exponential, mean 5 %), a few large (capped at 30 %).
- noise (30 %): coin-flip sides.
- trend (12 %) / mean_reverter (10 %): sign (or the opposite) of the past 4-hour move: whatever
  the rule earns on the path, nothing more.
- gambler (12 %): coin flips at 30–75x.
- loss_hider (10 %): small take-profits, no stop loss: high win rate, rare disasters.
- wash (8 %): in and out within minutes at low leverage, large size: volume without PnL.
Styles (scalper, intraday, swing) set the holding time and trade frequency across archetypes.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np

ARCHETYPE_SHARES = {
    "skilled": 0.08,
    "noise": 0.30,
    "trend": 0.12,
    "mean_reverter": 0.10,
    "gambler": 0.12,
    "loss_hider": 0.10,
    "wash": 0.08,
}
STYLE_HOLD_HOURS = {"scalper": 0.5, "intraday": 6.0, "swing": 48.0}  # median holding time
# Wash traders are in and out within minutes; loss hiders sit on losers (winners hit the small TP first).
HOLD_MULTIPLIER = {"wash": 0.1, "loss_hider": 4.0}
STYLE_TRADES_PER_DAY = {"scalper": 4.0, "intraday": 1.5, "swing": 0.4}


@dataclass(frozen=True)
class TraderTruth:
    trader_id: int
    trader: str  # 0x address
    archetype: str
    style: str
    edge: float  # P(correct side) - 0.5; 0 for everyone but the skilled
    leverage_habit: float  # median leverage
    risk_fraction: float  # collateral as a share of balance per trade
    initial_balance_usdc: int  # micro-USDC
    trades_per_day: float
    hold_hours: float
    day_off_prob: float
    tp_pct: float  # take profit as % of collateral (0 = none)
    sl_pct: float  # stop loss as % of collateral (0 = none)
    partial_close_prob: float
    quits_on_drawdown: bool
    weekly_deposit_prob: float
    btc_share: float

    def record(self) -> dict[str, object]:
        return asdict(self)


def trader_address(seed: int, trader_id: int) -> str:
    return "0x" + hashlib.sha256(f"vanta-sim:{seed}:{trader_id}".encode()).hexdigest()[:40]


def draw_population(n: int, seed: int, shares: dict[str, float] | None = None) -> list[TraderTruth]:
    shares = shares or ARCHETYPE_SHARES
    names = list(shares)
    probs = np.array([shares[k] for k in names], dtype=float)
    probs /= probs.sum()
    rng = np.random.default_rng([seed, 0xC0FFEE])
    # Exact proportions (largest remainder), then shuffled: small populations still hold every kind.
    counts = np.floor(probs * n).astype(int)
    for i in np.argsort(-(probs * n - counts))[: n - counts.sum()]:
        counts[i] += 1
    kinds = np.repeat(np.array(names), counts)
    rng.shuffle(kinds)
    return [_draw_trader(i, str(kinds[i]), seed) for i in range(n)]


def _draw_trader(i: int, archetype: str, seed: int) -> TraderTruth:
    rng = np.random.default_rng([seed, i, 1])
    style = str(rng.choice(["scalper", "intraday", "swing"], p=[0.3, 0.45, 0.25]))
    if archetype == "wash":
        style = "scalper"
    edge = float(min(0.3, rng.exponential(0.05))) if archetype == "skilled" else 0.0
    lev = {"gambler": rng.uniform(30, 75), "wash": rng.uniform(2, 5)}.get(
        archetype, float(np.exp(rng.normal(np.log(8), 0.6)))
    )
    tp, sl = float(rng.choice([0, 50, 100, 200])), float(rng.choice([0, 30, 50, 80]))
    if archetype == "loss_hider":
        tp, sl = float(rng.uniform(5, 15)), 0.0
    if archetype == "wash":
        tp, sl = 0.0, 0.0
    trades = STYLE_TRADES_PER_DAY[style] * float(np.exp(rng.normal(0, 0.5)))
    if archetype == "wash":
        trades *= 3
    return TraderTruth(
        trader_id=i,
        trader=trader_address(seed, i),
        archetype=archetype,
        style=style,
        edge=edge,
        leverage_habit=float(min(75.0, max(1.0, lev))),
        risk_fraction=float(rng.uniform(0.3, 0.6) if archetype == "wash" else rng.uniform(0.03, 0.2)),
        initial_balance_usdc=int(np.exp(rng.normal(np.log(5_000), 1.0))) * 1_000_000 + 1_000_000_000,
        trades_per_day=trades,
        hold_hours=STYLE_HOLD_HOURS[style] * HOLD_MULTIPLIER.get(archetype, 1.0),
        day_off_prob=float(rng.uniform(0.05, 0.4)),
        tp_pct=tp,
        sl_pct=sl,
        partial_close_prob=0.0 if archetype == "wash" else 0.15,
        quits_on_drawdown=bool(rng.random() < 0.3),
        weekly_deposit_prob=float(rng.uniform(0, 0.3)),
        btc_share=float(rng.uniform(0.2, 0.8)),
    )
