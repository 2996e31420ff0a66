"""The simulation loop: each trader acts on the price path by its hidden parameters, under the
Avantis mechanics (fees, rollover, loss protection, TP/SL, partial closes, liquidation, index
reuse), and every close is computed by `research.pnl.close_outcome`, the contracts' arithmetic.

Each trader has its own random stream seeded by (seed, trader id), so the output does not depend
on how traders are split across processes, and the same seed gives the same bytes.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from data.events import Side
from data.pairs import Pair
from research.pnl import E10, CloseOutcome, close_outcome, liquidation_price_e10, open_fee
from research.sim.population import TraderTruth
from research.sim.prices import BAR_SECONDS, PricePath

LOOKBACK_BARS = 16  # 4 hours: what trend followers and mean reverters look at
DAY = 86_400

# One event row, in data.event_frames.EVENT_COLUMNS order.
Row = tuple


@dataclass
class TraderResult:
    rows: list[Row]
    trades: int
    quit_ts: int | None
    final_balance_usdc: int


def _first_hit(mask: np.ndarray) -> int:
    """Index of the first True, or a large number when none."""
    if mask.size and mask.any():
        return int(mask.argmax())
    return 1 << 60


def simulate_trader(
    t: TraderTruth,
    paths: dict[str, PricePath],
    pairs: dict[str, Pair],
    *,
    seed: int,
    start_ts: int,
    days: int,
) -> TraderResult:
    rng = np.random.default_rng([seed, t.trader_id, 2])
    symbols = ["BTC/USD", "ETH/USD"]
    # Entry times: active days (days off), a bursty daily rate, uniform times within the day.
    active = rng.random(days) >= t.day_off_prob
    counts = rng.poisson(t.trades_per_day * rng.gamma(2.0, 0.5, days) * active)
    entry_ts = np.sort(
        np.concatenate([start_ts + d * DAY + rng.integers(0, DAY, c) for d, c in enumerate(counts)])
    )
    n_bars = min(p.bars for p in paths.values())
    end_bar = n_bars - 1

    balance = t.initial_balance_usdc
    peak = balance
    settlements: list[tuple[int, int]] = []  # (ts, usdc returned)
    busy: dict[str, list[tuple[int, int]]] = {s: [] for s in symbols}  # open positions: (close ts, index)
    rows: list[Row] = []
    trades = 0
    quit_ts = None
    last_deposit_week = -1
    src, venue = "simulator", "avantis"

    for n, ts in enumerate(entry_ts.tolist()):
        while settlements and settlements[0][0] <= ts:
            balance += heapq.heappop(settlements)[1]
        week = (ts - start_ts) // (7 * DAY)
        if week != last_deposit_week:
            last_deposit_week = week
            if rng.random() < t.weekly_deposit_prob:
                balance += t.initial_balance_usdc // 4
        locked = sum(amount for _, amount in settlements)
        peak = max(peak, balance + locked)
        if t.quits_on_drawdown and balance + locked < peak // 2:
            quit_ts = ts
            break
        symbol = symbols[0] if rng.random() < t.btc_share else symbols[1]
        pair, path = pairs[symbol], paths[symbol]
        bar = (ts - start_ts) // BAR_SECONDS
        if bar >= end_bar - 1:
            break
        hold_bars = max(1, round(t.hold_hours * float(np.exp(rng.normal(0, 0.7))) * 3600 / BAR_SECONDS))
        exit_bar = min(end_bar, bar + hold_bars)
        entry = int(path.close[bar])
        side = _choose_side(t, path, bar, exit_bar, entry, rng)
        lev_tenths = int(
            np.clip(
                round(t.leverage_habit * float(np.exp(rng.normal(0, 0.25))) * 10),
                int(pair.min_leverage * 10),
                int(pair.max_leverage * 10),
            )
        )
        lev = lev_tenths * E10 // 10
        deposit = int(balance * t.risk_fraction) // 1_000_000 * 1_000_000
        if deposit <= 0 or deposit > balance or deposit * lev // E10 < pair.min_position_usdc:
            continue  # too small to open: the venue would refuse it, so the trader does not trade
        fee = open_fee(deposit, lev, pair.open_fee_ppm)
        collateral = deposit - fee  # initialPosToken: the collateral after the opening fee
        balance -= deposit

        # Index reuse: the lowest index not held by an open position on this pair.
        held = busy[symbol]
        held[:] = [(c, i) for c, i in held if c > ts]
        taken = {i for _, i in held}
        index = next(i for i in range(len(taken) + 1) if i not in taken)
        trades += 1
        tier = 1 if rng.random() < 0.3 else 0
        lp_pct = pair.loss_pct(tier)
        tp_e10 = max(0, _target(entry, lev, side, t.tp_pct)) if t.tp_pct else 0
        sl_e10 = max(0, _target(entry, lev, side, -t.sl_pct)) if t.sl_pct else 0
        eid = f"sim:{seed}:{t.trader_id}:{n}"
        rows.append(
            (
                f"{eid}:open",
                venue,
                src,
                t.trader,
                pair.index,
                symbol,
                "open",
                index,
                ts,
                ts,
                side.value,
                collateral,
                lev,
                entry,
                None,
                fee,
                0,
                0,
                0,
                None,
                None,
                tp_e10 or None,
                sl_e10 or None,
            )
        )

        # Where the position ends: liquidation, stop loss, take profit, or the planned exit.
        liq = liquidation_price_e10(entry, lev, side)
        lows, highs = path.low[bar + 1 : exit_bar + 1], path.high[bar + 1 : exit_bar + 1]
        if side is Side.LONG:
            hits = (
                _first_hit(lows <= liq),
                _first_hit(lows <= sl_e10) if sl_e10 else 1 << 60,
                _first_hit(highs >= tp_e10) if tp_e10 else 1 << 60,
            )
        else:
            hits = (
                _first_hit(highs >= liq),
                _first_hit(highs >= sl_e10) if sl_e10 else 1 << 60,
                _first_hit(lows <= tp_e10) if tp_e10 else 1 << 60,
            )
        first = min(hits)
        if first < (1 << 60):
            which = hits.index(first)  # ties resolve liquidation, then SL, then TP: the trader's worst case
            close_bar = bar + 1 + first
            close_price, kind = ((liq, "liquidation"), (sl_e10, "sl"), (tp_e10, "tp"))[which]
        else:
            close_bar, close_price, kind = exit_bar, int(path.close[exit_bar]), "close"
        close_ts = start_ts + close_bar * BAR_SECONDS + int(rng.integers(0, BAR_SECONDS))
        close_ts = max(close_ts, ts + 1)

        remaining = collateral
        # A partial close halfway, when the position lives that long.
        if t.partial_close_prob and close_bar - bar >= 4 and rng.random() < t.partial_close_prob:
            mid_bar = bar + (close_bar - bar) // 2
            part_ts = start_ts + mid_bar * BAR_SECONDS
            part = collateral // 2
            out = close_outcome(
                part,
                lev,
                entry,
                int(path.close[mid_bar]),
                side,
                rollover_usdc=_rollover(part, lev, pair, part_ts - ts),
                close_fee_ppm=pair.close_fee_ppm,
                loss_protection_pct=lp_pct,
                max_gain_pct=pair.max_gain_pct,
            )
            if not out.liquidated and part_ts > ts:
                rows.append(
                    _close_row(
                        f"{eid}:partial",
                        t,
                        pair.index,
                        symbol,
                        "partial_close",
                        index,
                        ts,
                        part_ts,
                        side,
                        collateral,
                        lev,
                        int(path.close[mid_bar]),
                        part,
                        out,
                        tp_e10,
                        sl_e10,
                    )
                )
                heapq.heappush(settlements, (part_ts, out.usdc_sent))
                remaining -= part
        out = close_outcome(
            remaining,
            lev,
            entry,
            close_price,
            side,
            rollover_usdc=_rollover(remaining, lev, pair, close_ts - ts),
            close_fee_ppm=pair.close_fee_ppm,
            loss_protection_pct=lp_pct,
            max_gain_pct=pair.max_gain_pct,
        )
        if out.liquidated:
            kind = "liquidation"
        rows.append(
            _close_row(
                f"{eid}:{kind}",
                t,
                pair.index,
                symbol,
                kind,
                index,
                ts,
                close_ts,
                side,
                remaining,
                lev,
                close_price,
                remaining,
                out,
                tp_e10,
                sl_e10,
            )
        )
        heapq.heappush(settlements, (close_ts, out.usdc_sent))
        held.append((close_ts, index))
    final = balance + sum(amount for _, amount in settlements)
    return TraderResult(rows, trades, quit_ts, final)


def _close_row(
    event_id: str,
    t: TraderTruth,
    pair_index: int,
    symbol: str,
    kind: str,
    index: int,
    open_ts: int,
    ts: int,
    side: Side,
    collateral: int,
    lev: int,
    price: int,
    closed: int,
    out: CloseOutcome,
    tp_e10: int,
    sl_e10: int,
) -> Row:
    """A close event row (EVENT_COLUMNS order): `collateral` is the position's before the close."""
    return (
        event_id,
        "avantis",
        "simulator",
        t.trader,
        pair_index,
        symbol,
        kind,
        index,
        open_ts,
        ts,
        side.value,
        collateral,
        lev,
        price,
        closed,
        0,
        out.closing_fee_usdc,
        out.rollover_usdc,
        out.loss_protection_usdc,
        out.usdc_sent,
        out.gross_usdc,
        tp_e10 or None,
        sl_e10 or None,
    )


def _choose_side(
    t: TraderTruth, path: PricePath, bar: int, exit_bar: int, entry: int, rng: np.random.Generator
) -> Side:
    if t.archetype == "skilled":
        # The planted edge: right about the move over the holding period with probability 0.5 + edge.
        future_up = int(path.close[exit_bar]) >= entry
        right = rng.random() < 0.5 + t.edge
        return Side.LONG if future_up == right else Side.SHORT
    if t.archetype in ("trend", "mean_reverter"):
        past_up = entry >= int(path.close[max(0, bar - LOOKBACK_BARS)])
        return Side.LONG if past_up == (t.archetype == "trend") else Side.SHORT
    return Side.LONG if rng.random() < 0.5 else Side.SHORT


def _target(entry: int, lev: int, side: Side, pnl_pct: float) -> int:
    """Price at which the position's PnL reaches `pnl_pct` percent of collateral."""
    move = entry * int(pnl_pct * 100) * E10 // (10_000 * lev)
    return entry + move if side is Side.LONG else entry - move


def _rollover(collateral: int, lev: int, pair: Pair, seconds: int) -> int:
    """Margin fee accrued on notional over the holding time (integer micro-USDC)."""
    return collateral * lev // E10 * pair.rollover_ppm_per_hour * max(0, seconds) // (3600 * 1_000_000)
