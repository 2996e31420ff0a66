"""Point-in-time features: no look-ahead, values by hand, the ledger's PnL."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data.event_frames import EVENT_SCHEMA, events_from_frame
from research import features as F
from research import skill
from research.ledger import PositionLedger
from tests.research.analyzer_fixtures import small_population

DAY = 86_400


def _tables(events: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    return F.trade_table(events), F.position_table(events), F.pair_prices(events)


def test_deleting_every_event_after_as_of_changes_no_feature() -> None:
    events, _ = small_population()
    start = int(events["ts"].min())
    for as_of in (start + 20 * DAY + 1234, start + 33 * DAY):
        trades, positions, prices = _tables(events)
        full = F.trader_features(trades, as_of, positions=positions, prices=prices)
        cut = events.filter(pl.col("ts") < as_of)
        trades_c, positions_c, prices_c = _tables(cut)
        truncated = F.trader_features(trades_c, as_of, positions=positions_c, prices=prices_c)
        assert full.height > 50 and full["open_positions"].sum() > 0  # open books are part of it
        # Equal up to the order in which parallel group-bys add floats (1e-12 relative).
        assert_frame_equal(full, truncated, check_exact=False, rel_tol=1e-9, abs_tol=1e-12)
        # ...while the future does change the labels: the check above is not vacuous.
        assert F.forward_outcomes(trades, as_of).height > 0
        assert F.forward_outcomes(trades_c, as_of).height == 0


def _event(**kw: object) -> dict[str, object]:
    base = dict.fromkeys(EVENT_SCHEMA)
    base.update(venue="avantis", source="test", pair="BTC/USD", pair_index=1, trade_index=0)
    base.update(open_fee_usdc=0, close_fee_usdc=0, rollover_fee_usdc=0, loss_protection_usdc=0)
    base.update(kw)
    return base


def _round_trip(
    trader: str, n: int, open_ts: int, close_ts: int, sent: int, *, kind: str = "close", sl: int | None = None
) -> list[dict[str, object]]:
    common = dict(trader=trader, open_ts=open_ts, side="long", leverage_e10=10 * 10**10, trade_index=n)
    return [
        _event(
            event_id=f"{trader}:{n}:o",
            kind="open",
            ts=open_ts,
            collateral_usdc=100_000_000,
            price_e10=100 * 10**10,
            open_fee_usdc=1_000_000,
            sl_e10=sl,
            **common,
        ),
        _event(
            event_id=f"{trader}:{n}:c",
            kind=kind,
            ts=close_ts,
            collateral_usdc=100_000_000,
            size_closed_usdc=100_000_000,
            usdc_sent=sent,
            price_e10=101 * 10**10,
            **common,
        ),
    ]


def test_features_by_hand_for_one_trader() -> None:
    # Three round trips of 100 USDC at 10x: +9, -21 (liquidated after 5 minutes... of holding), +4 USDC net.
    rows = (
        _round_trip("a", 0, 0, 3600, 110_000_000)
        + _round_trip("a", 1, DAY, DAY + 300, 80_000_000, kind="liquidation")
        + _round_trip("a", 2, 2 * DAY, 2 * DAY + 7200, 105_000_000, sl=90 * 10**10)
    )
    events = pl.DataFrame(rows, schema=EVENT_SCHEMA)
    trades, positions, prices = _tables(events)
    assert trades["realized"].to_list() == pytest.approx([9.0, -21.0, 4.0])  # open fee 1 USDC each
    f = F.trader_features(trades, 3 * DAY, positions=positions, prices=prices).row(0, named=True)
    assert f["trades"] == 3 and f["active_days"] == 3
    assert f["win_rate"] == pytest.approx(2 / 3)
    assert f["pnl_7d"] == pytest.approx(-8.0) and f["pnl_90d"] == pytest.approx(-8.0)
    assert f["liquidation_share"] == pytest.approx(1 / 3)
    assert f["sl_share"] == pytest.approx(1 / 3) and f["no_sl_share"] == pytest.approx(2 / 3)
    assert f["lev_mean"] == pytest.approx(10.0) and f["long_share"] == 1.0
    assert f["payoff_ratio"] == pytest.approx(0.065 / 0.21)
    assert f["profit_factor"] == pytest.approx(13 / 21)
    assert f["best_trade_share"] == pytest.approx(9 / 13)
    assert f["max_drawdown_roc"] == pytest.approx(21 / 100)
    assert f["short_flat_share"] == 0.0  # the 5-minute trip lost 21 %: not flat
    assert f["open_positions"] == 0.0
    daily = np.array([4.0, -21.0, 9.0] + [0.0] * 4)  # the record is padded to MIN_SKILL_DAYS
    assert f["sharpe_daily"] == pytest.approx(daily.mean() / daily.std(ddof=1))
    assert f["psr"] == pytest.approx(
        skill.probabilistic_sharpe_ratio(f["sharpe_daily"], 7, _skew(daily), _kurt(daily)), rel=1e-6
    )


def _skew(x: np.ndarray) -> float:
    m = x.mean()
    return float(((x - m) ** 3).mean() / ((x - m) ** 2).mean() ** 1.5)


def _kurt(x: np.ndarray) -> float:
    m = x.mean()
    return float(((x - m) ** 4).mean() / ((x - m) ** 2).mean() ** 2)


def test_realized_pnl_agrees_with_the_exact_ledger() -> None:
    events, _ = small_population()
    sample = events.filter(pl.col("trader").is_in(events["trader"].unique().sort().head(20).implode()))
    closes = PositionLedger().apply_all(events_from_frame(sample))
    exact = {}
    for c in closes:
        exact[c.trader] = exact.get(c.trader, 0) + c.realized_pnl_usdc
    ours = F.trade_table(sample).group_by("trader").agg(pl.col("realized").sum())
    for trader, realized in ours.iter_rows():
        # Float features round the pro-rata fee share of partial closes; never more than a cent a trade.
        assert realized == pytest.approx(exact[trader] / 1e6, abs=0.01 * 50)
    assert len(exact) == ours.height


def test_batched_bootstrap_separates_an_edge_from_noise() -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1, (200, 60))
    edge = rng.normal(0.8, 1, (5, 60))
    p = skill.stationary_bootstrap_pvalues(np.vstack([noise, edge]), np.full(205, 60), n_boot=300)
    assert (p[-5:] < 0.01).all()
    assert 0.3 < p[:200].mean() < 0.7  # uniform under the null
    single = skill.stationary_bootstrap_pvalue(edge[0], n_boot=300)
    assert single < 0.01 and not math.isnan(p[0])


def test_both_snapshot_layouts_give_the_same_events() -> None:
    """`vanta snapshot` writes PostgreSQL's columns (decimals, timestamps), the simulator its own."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from research.pipeline import events_from_snapshot

    events, _ = small_population()
    sample = events.head(500)
    pg = sample.select(
        "event_id",
        "venue",
        "source",
        "trader",
        "pair_index",
        "pair",
        "kind",
        "trade_index",
        "open_ts",
        "side",
        "collateral_usdc",
        "size_closed_usdc",
        "open_fee_usdc",
        "close_fee_usdc",
        "rollover_fee_usdc",
        "loss_protection_usdc",
        "usdc_sent",
        ts=pl.Series([datetime.fromtimestamp(t, UTC) for t in sample["ts"]]),
        leverage=pl.Series(
            [Decimal(v).scaleb(-10) for v in sample["leverage_e10"]], dtype=pl.Decimal(38, 10)
        ),
        price=pl.Series([Decimal(v).scaleb(-10) for v in sample["price_e10"]], dtype=pl.Decimal(38, 10)),
    )
    back = events_from_snapshot(pg)
    same = ["event_id", "trader", "kind", "ts", "open_ts", "leverage_e10", "price_e10", "usdc_sent"]
    assert back.select(same).equals(sample.select(same))
    assert F.trade_table(back)["realized"].equals(
        F.trade_table(sample.with_columns(tp_e10=None, sl_e10=None))["realized"]
    )
