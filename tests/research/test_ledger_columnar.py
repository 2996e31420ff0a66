"""The columnar ledger realizes exactly the closes `PositionLedger` realizes: simulated traders
(open fees, partial closes, liquidations, TP/SL), the real closed trades, and odd sequences the
array path hands back to the ledger (increases, margin updates, refusals, closes after the end)."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from data.event_frames import events_from_frame, ledger_frame
from data.events import EventKind, Side, TradeEvent
from data.store import KIND_RANK
from research.ledger import PositionLedger
from research.ledger_columnar import realized_closes
from research.stats import closes_frame
from tests.conftest import shared_data_or_skip


def ledger_order(events: list[TradeEvent]) -> list[TradeEvent]:
    return sorted(events, key=lambda e: (e.ts, KIND_RANK[e.kind], e.event_id))


def reference(events: list[TradeEvent]) -> pl.DataFrame:
    ledger = PositionLedger()
    closes = []
    for e in events:
        try:
            c = ledger.apply(e)
        except (ValueError, ArithmeticError):  # an increase of an adopted position divides by 0
            continue
        if c is not None:
            closes.append(c)
    return closes_frame(closes).with_columns(pl.col("trader").cast(pl.Utf8))


def columnar(events: list[TradeEvent]) -> pl.DataFrame:
    return realized_closes(ledger_frame(events)).drop("event_id").with_columns(pl.col("trader").cast(pl.Utf8))


def assert_same(events: list[TradeEvent]) -> None:
    ordered = ledger_order(events)
    expected, got = reference(ordered), columnar(ordered)
    assert got.height == expected.height
    # In time order; closes of different positions in the same second may come in either order.
    assert got["ts"].to_list() == expected["ts"].to_list()
    assert got.sort(got.columns).to_dicts() == expected.sort(expected.columns).to_dicts()


def test_simulated_population() -> None:
    from research.sim.run import simulate

    sim = simulate(40, 12, seed=9, prices="synthetic", workers=1)
    events = events_from_frame(sim.events)
    assert {e.kind for e in events} >= {EventKind.OPEN, EventKind.PARTIAL_CLOSE, EventKind.CLOSE}
    assert any(e.open_fee_usdc for e in events)
    assert_same(events)


def test_real_closed_trades() -> None:
    from data.sources.veranta_history.ingest import events_for
    from data.sources.veranta_history.records import load_file, parse_trade

    events = []
    for path in sorted(shared_data_or_skip("avantis", "trades").glob("*.json")):
        trader, records = load_file(path)
        events += events_for([parse_trade(trader, r) for r in records])
    assert_same(events)


KINDS = [EventKind.OPEN, EventKind.PARTIAL_CLOSE, EventKind.CLOSE, EventKind.LIQUIDATION, EventKind.TP]
KINDS += [EventKind.MARGIN_UPDATE, EventKind.TP_SL_UPDATE]


@st.composite
def event_streams(draw) -> list[TradeEvent]:
    events = []
    for i in range(draw(st.integers(0, 24))):
        kind = draw(st.sampled_from(KINDS))
        events.append(
            TradeEvent(
                event_id=f"e{i:03d}",
                venue="avantis",
                source="test",
                trader=draw(st.sampled_from(["0x" + "a" * 40, "0x" + "b" * 40])),
                pair_index=draw(st.integers(0, 1)),
                kind=kind,
                trade_index=0,
                open_ts=100,
                ts=100 + draw(st.integers(0, 20)),
                side=draw(st.sampled_from([Side.LONG, Side.SHORT, None])),
                # up to 1e9 USDC: fee x size then passes 64 bits, the exact slow product
                collateral_usdc=draw(st.integers(0, 3).map(lambda k: k * 250_000_000) | st.just(10**15))
                or None,
                leverage=draw(st.sampled_from([Decimal(5), Decimal("12.5"), Decimal("0.0000000001"), None])),
                price=draw(st.sampled_from([Decimal(100), Decimal(0), None])),
                size_closed_usdc=draw(st.integers(-1, 4).map(lambda k: k * 250_000_000) | st.just(10**15)),
                usdc_sent=draw(st.integers(-1, 10**12)),
                open_fee_usdc=draw(st.integers(0, 10**9)),
                rollover_fee_usdc=draw(st.integers(0, 10**6)),
            )
        )
    return events


@settings(max_examples=120, deadline=None)
@given(event_streams())
def test_any_event_stream(events: list[TradeEvent]) -> None:
    assert_same(events)


def test_a_hash_collision_falls_back_to_exact_numbering(monkeypatch) -> None:
    """Positions are numbered by a 64-bit hash of their identity; if two identities shared one
    (forced here: every hash is 0) the collision is seen and the exact numbering used."""
    from research.sim.run import simulate

    sim = simulate(8, 5, seed=3, prices="synthetic", workers=1)
    events = ledger_order(events_from_frame(sim.events))
    expected = columnar(events)
    monkeypatch.setattr(pl.Expr, "hash", lambda self, *a, **k: pl.lit(0, pl.UInt64))
    assert columnar(events).sort(expected.columns).to_dicts() == expected.sort(expected.columns).to_dicts()
