"""Check closed trades from the Veranta history API against the ledger's formula.

Two questions per trade: does `usdcSent` reproduce to the micro-USDC from its parts, and is the
gross explained by the prices (exactly, through a whole-percent loss-protection multiplier, or by
a liquidation)? Anything else is `unexplained` and fails the run.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, localcontext

from data.sources.veranta_history.records import HistoryTrade
from data.units import USDC_STEP

PRICE_TOLERANCE = Decimal("0.01")  # USDC: the API rounds prices it reports


@dataclass(frozen=True, slots=True)
class TradeCheck:
    trade: HistoryTrade
    usdc_sent_exact: bool
    classification: str  # price_exact | loss_protected | liquidated | unexplained
    implied_gross: Decimal
    loss_protection_pct: int | None
    closing_fee_rate: Decimal | None


def implied_gross(t: HistoryTrade) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 50
        return t.position_size * t.leverage * (t.close_price - t.open_price) / t.open_price * t.side.sign


def check_trade(t: HistoryTrade) -> TradeCheck:
    with localcontext() as ctx:
        ctx.prec = 50
        parts = (t.position_size + t.gross - t.closing_fee - t.funding).quantize(USDC_STEP)
        sent_exact = parts == t.usdc_sent.quantize(USDC_STEP)
        implied = implied_gross(t)
        multiplier = None
        if t.usdc_sent == 0:
            cls = "liquidated"
        elif abs(implied - t.gross) <= PRICE_TOLERANCE:
            cls = "price_exact"
        elif t.gross < 0 and implied < 0 and (m := _whole_percent_multiplier(implied, t.gross)) is not None:
            cls, multiplier = "loss_protected", m
        else:
            cls = "unexplained"
        base = t.position_size * t.leverage + t.gross
        rate = (t.closing_fee / base) if base > 0 and t.usdc_sent > 0 else None
    return TradeCheck(t, sent_exact, cls, implied, multiplier, rate)


def _whole_percent_multiplier(implied: Decimal, gross: Decimal) -> int | None:
    m = int((gross / implied * 100).to_integral_value())
    if 0 < m < 100 and abs(implied * m / 100 - gross) <= PRICE_TOLERANCE:
        return m
    return None


def summarize(checks: list[TradeCheck]) -> dict[str, object]:
    classes = Counter(c.classification for c in checks)
    rates = [c.closing_fee_rate for c in checks if c.closing_fee_rate is not None]
    return {
        "trades": len(checks),
        "usdc_sent_exact": sum(c.usdc_sent_exact for c in checks),
        "price_exact": classes["price_exact"],
        "loss_protected": classes["loss_protected"],
        "liquidated": classes["liquidated"],
        "unexplained": classes["unexplained"],
        "closing_fee_rate_median": str(statistics.median(rates).quantize(Decimal("0.0000001")))
        if rates
        else None,
        "loss_protection_multipliers_pct": dict(
            sorted(
                Counter(c.loss_protection_pct for c in checks if c.loss_protection_pct is not None).items()
            )
        ),
    }


def all_hold(summary: dict[str, object]) -> bool:
    return summary["usdc_sent_exact"] == summary["trades"] and summary["unexplained"] == 0


@dataclass(frozen=True, slots=True)
class EventCheck:
    closes: int
    exact: int
    mismatches: list[str]


def reconcile_events(events: list, catalogue: dict) -> EventCheck:
    """Replay canonical events through the ledger and recompute every close with the contracts'
    formula from the position's open price: `usdc_sent` and the gross must match to the micro-USDC.

    The loss-protection multiplier is not on the event; it must be one of the pair's tiers.
    """
    from data.units import to_e10
    from research.ledger import PositionLedger
    from research.pnl import close_outcome

    ledger = PositionLedger()
    closes = exact = 0
    mismatches: list[str] = []
    for ev in events:
        if not ev.is_close:
            ledger.apply(ev)
            continue
        pos = ledger.positions.get(ev.position_key)
        open_price = pos.open_price if pos is not None and pos.is_open else None
        ledger.apply(ev)
        closes += 1
        if open_price is None:
            mismatches.append(f"{ev.event_id}: close without a seen open")
            continue
        pair = catalogue[ev.pair_index]
        tiers = sorted(set(pair.loss_protection_pct.values()) | {100}, reverse=True)
        ok = False
        for pct in tiers if ev.loss_protection_usdc else [100]:
            out = close_outcome(
                ev.size_closed_usdc,
                to_e10(ev.leverage),
                to_e10(open_price),
                to_e10(ev.price),
                ev.side,
                rollover_usdc=ev.rollover_fee_usdc,
                close_fee_ppm=pair.close_fee_ppm,
                loss_protection_pct=pct,
                max_gain_pct=pair.max_gain_pct,
            )
            if out.usdc_sent == ev.usdc_sent and (out.liquidated or out.gross_usdc == ev.gross_pnl_usdc):
                ok = True
                break
        if ok:
            exact += 1
        else:
            mismatches.append(f"{ev.event_id}: usdc_sent {ev.usdc_sent} not reproduced")
    return EventCheck(closes, exact, mismatches)
