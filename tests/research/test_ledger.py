from decimal import Decimal

import pytest

from data.events import EventKind, Side, TradeEvent
from research.ledger import LedgerError, PositionLedger

T = "0xabc"


def ev(event_id: str, kind: EventKind, ts: int, *, idx: int = 0, open_ts: int = 100, **kw) -> TradeEvent:
    base = dict(
        venue="avantis",
        source="test",
        trader=T,
        pair_index=1,
        trade_index=idx,
        open_ts=open_ts,
        side=Side.LONG,
        leverage=Decimal(10),
    )
    base.update(kw)
    return TradeEvent(event_id=event_id, kind=kind, ts=ts, **base)


def test_round_trip_realized_equals_cash_out_minus_cash_in() -> None:
    ledger = PositionLedger()
    ledger.apply(
        ev(
            "o",
            EventKind.OPEN,
            100,
            collateral_usdc=1_000_000_000,
            price=Decimal(100),
            open_fee_usdc=4_500_000,
        )
    )
    c1 = ledger.apply(
        ev(
            "c1",
            EventKind.PARTIAL_CLOSE,
            200,
            collateral_usdc=1_000_000_000,
            size_closed_usdc=333_333_333,
            usdc_sent=350_000_000,
            close_fee_usdc=1_000,
            price=Decimal(101),
        )
    )
    c2 = ledger.apply(
        ev(
            "c2",
            EventKind.CLOSE,
            300,
            collateral_usdc=666_666_667,
            size_closed_usdc=666_666_667,
            usdc_sent=600_000_001,
            close_fee_usdc=2_000,
            price=Decimal(99),
        )
    )
    assert c1 is not None and c2 is not None
    # Opening fee split pro rata, the remainder on the last close: nothing lost to rounding.
    assert c1.open_fee_share_usdc == 4_500_000 * 333_333_333 // 1_000_000_000
    assert c1.open_fee_share_usdc + c2.open_fee_share_usdc == 4_500_000
    cash_in = 1_000_000_000 + 4_500_000
    cash_out = 350_000_000 + 600_000_001
    assert c1.realized_pnl_usdc + c2.realized_pnl_usdc == cash_out - cash_in
    pos = ledger.positions[c2.position_key]
    assert not pos.is_open and pos.collateral_usdc == 0 and pos.realized_pnl_usdc == cash_out - cash_in


def test_reused_index_is_a_new_position() -> None:
    ledger = PositionLedger()
    for n, open_ts in enumerate((100, 500)):
        ledger.apply(
            ev(
                f"o{n}",
                EventKind.OPEN,
                open_ts,
                open_ts=open_ts,
                collateral_usdc=10_000_000,
                price=Decimal(1),
            )
        )
        ledger.apply(
            ev(
                f"c{n}",
                EventKind.CLOSE,
                open_ts + 10,
                open_ts=open_ts,
                collateral_usdc=10_000_000,
                size_closed_usdc=10_000_000,
                usdc_sent=11_000_000 * (n + 1),
            )
        )
    assert len(ledger.positions) == 2
    assert sorted(p.realized_pnl_usdc for p in ledger.positions.values()) == [1_000_000, 12_000_000]


def test_liquidation_loses_the_collateral_and_fee() -> None:
    ledger = PositionLedger()
    ledger.apply(
        ev("o", EventKind.OPEN, 100, collateral_usdc=50_000_000, price=Decimal(100), open_fee_usdc=225_000)
    )
    liq = ledger.apply(
        ev(
            "l",
            EventKind.LIQUIDATION,
            200,
            collateral_usdc=50_000_000,
            size_closed_usdc=50_000_000,
            usdc_sent=0,
        )
    )
    assert liq is not None and liq.realized_pnl_usdc == -50_225_000
    assert ledger.positions[liq.position_key].liquidated


def test_duplicate_event_is_ignored() -> None:
    ledger = PositionLedger()
    o = ev("o", EventKind.OPEN, 100, collateral_usdc=10_000_000, price=Decimal(1))
    c = ev(
        "c",
        EventKind.CLOSE,
        110,
        collateral_usdc=10_000_000,
        size_closed_usdc=10_000_000,
        usdc_sent=9_000_000,
    )
    assert len(ledger.apply_all([o, c, o, c])) == 1


def test_increase_averages_the_open_price_by_notional() -> None:
    ledger = PositionLedger()
    ledger.apply(ev("o1", EventKind.OPEN, 100, collateral_usdc=100_000_000, price=Decimal(100)))
    ledger.apply(ev("o2", EventKind.OPEN, 150, collateral_usdc=100_000_000, price=Decimal(200)))
    pos = next(iter(ledger.positions.values()))
    assert pos.collateral_usdc == 200_000_000
    assert pos.open_price.quantize(Decimal("0.0001")) == Decimal("133.3333")  # harmonic mean by notional


def test_margin_update_changes_collateral_and_charges_its_fee() -> None:
    ledger = PositionLedger()
    ledger.apply(ev("o", EventKind.OPEN, 100, collateral_usdc=100_000_000, price=Decimal(100)))
    ledger.apply(
        ev(
            "m",
            EventKind.MARGIN_UPDATE,
            120,
            collateral_usdc=200_000_000,
            leverage=Decimal(5),
            rollover_fee_usdc=10_000,
        )
    )
    pos = next(iter(ledger.positions.values()))
    assert (pos.collateral_usdc, pos.leverage, pos.realized_pnl_usdc) == (200_000_000, Decimal(5), -10_000)


def test_close_of_a_position_opened_before_our_data_is_adopted() -> None:
    ledger = PositionLedger()
    c = ledger.apply(
        ev(
            "c",
            EventKind.CLOSE,
            110,
            collateral_usdc=10_000_000,
            size_closed_usdc=10_000_000,
            usdc_sent=12_000_000,
        )
    )
    assert c is not None and c.realized_pnl_usdc == 2_000_000
    assert not ledger.positions[c.position_key].open_seen


def test_an_increase_of_an_adopted_position_keeps_its_open_price_unknown() -> None:
    """A partial close adopts a position opened before our data (open price unknown); the trader
    then adds to it: collateral and PnL stay exact and the average open price stays unknown (0)."""
    ledger = PositionLedger()
    part = ev(
        "c1",
        EventKind.PARTIAL_CLOSE,
        110,
        collateral_usdc=10_000_000,
        size_closed_usdc=4_000_000,
        usdc_sent=5_000_000,
    )
    first = ledger.apply(part)
    assert first is not None and first.realized_pnl_usdc == 1_000_000
    ledger.apply(ev("o2", EventKind.OPEN, 120, collateral_usdc=6_000_000, price=Decimal(60_000)))
    pos = ledger.positions[part.position_key]
    assert (pos.collateral_usdc, pos.open_price, pos.open_seen) == (12_000_000, Decimal(0), False)
    last = ledger.apply(ev("c2", EventKind.CLOSE, 130, size_closed_usdc=12_000_000, usdc_sent=11_000_000))
    assert last is not None and last.full and last.realized_pnl_usdc == -1_000_000


@pytest.mark.parametrize(
    "bad",
    [
        ev("x", EventKind.OPEN, 1, collateral_usdc=None, price=Decimal(1)),
        ev("x", EventKind.OPEN, 1, collateral_usdc=-5, price=Decimal(1)),
        ev("x", EventKind.CLOSE, 1, collateral_usdc=10, size_closed_usdc=20, usdc_sent=0),
        ev("x", EventKind.MARGIN_UPDATE, 1, collateral_usdc=10),
    ],
)
def test_bad_events_are_refused_with_the_event_named(bad: TradeEvent) -> None:
    with pytest.raises(LedgerError, match="x"):
        PositionLedger().apply(bad)
