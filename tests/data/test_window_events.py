"""`vanta stats`' read of a window from PostgreSQL: the binary read (two scans, fixed-width rows,
ids only where they order events) gives the tracker's statistics exactly, for positions opened
before the window and closed inside it, events of one position at one moment, and the shapes
that send the read to the exact text path (a trader that is not an address, a huge leverage)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import asyncpg
import polars as pl
import pytest

from data.event_frames import events_from_frame
from data.events import EventKind, Side, TradeEvent
from data.store import insert_events
from data.window_events import load_window_events, window_snapshot, with_event_ids
from execution.tracker import full_recompute, window_stats
from research.ledger_columnar import TiedEvents, realized_closes
from research.stats import Eligibility, closes_frame

pytestmark = pytest.mark.integration
DAY = 86_400
ELIG = Eligibility(24 * 365, 5, 1_000)


def _event(trader: str, index: int, kind: EventKind, ts: int, open_ts: int, **values: object) -> TradeEvent:
    return TradeEvent(
        event_id=f"t:{trader}:{index}:{open_ts}:{kind.value}:{ts}:{values.get('size_closed_usdc')}",
        venue="avantis",
        source="test",
        trader=trader,
        pair_index=1,
        kind=kind,
        trade_index=index,
        open_ts=open_ts,
        ts=ts,
        side=Side.LONG,
        leverage=Decimal("12.5"),
        price=Decimal(100),
        **values,  # type: ignore[arg-type]
    )


def edge_cases(trader: str, t0: int) -> list[TradeEvent]:
    """Opened long before the window with a partial close before it; two partial closes of one
    position in one second (only their ids order them); open at the window's start."""
    e = []
    # Opened 40 days before t0 (the window is the 30 days before t0), partial close 35 days
    # before, the rest inside the window.
    o = t0 - 40 * DAY
    e.append(_event(trader, 1, EventKind.OPEN, o, o, collateral_usdc=900_000_000, open_fee_usdc=1_000_003))
    e.append(
        _event(
            trader, 1, EventKind.PARTIAL_CLOSE, o + 5 * DAY, o, collateral_usdc=900_000_000,
            size_closed_usdc=300_000_000, usdc_sent=310_000_000,
        )
    )  # fmt: skip
    e.append(
        _event(
            trader, 1, EventKind.CLOSE, t0 - DAY, o, collateral_usdc=600_000_000,
            size_closed_usdc=600_000_000, usdc_sent=590_000_000,
        )
    )  # fmt: skip
    # Two partial closes at one moment inside the window: the fee shares depend on their order.
    o2 = t0 - 10 * DAY
    e.append(_event(trader, 2, EventKind.OPEN, o2, o2, collateral_usdc=700_000_007, open_fee_usdc=999_999))
    for size in (
        77_777_777,
        234_567_891,
    ):  # fee shares 111,110 + 335,097 one way, 335,096 + 111,111 the other
        e.append(
            _event(
                trader, 2, EventKind.PARTIAL_CLOSE, o2 + 60, o2, collateral_usdc=700_000_007,
                size_closed_usdc=size, usdc_sent=size + 5,
            )
        )  # fmt: skip
    e.append(
        _event(
            trader, 2, EventKind.CLOSE, o2 + 120, o2, collateral_usdc=387_654_339,
            size_closed_usdc=387_654_339, usdc_sent=400_000_000,
        )
    )  # fmt: skip
    return e


async def stats_both_ways(pool: asyncpg.Pool, as_of: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(window_stats' stats, the tracker's); their closes of the window are asserted equal one
    by one on the way (a share of an opening fee depends on the order of closes)."""
    tracker = await full_recompute(pool, as_of=as_of, window_days=30, eligibility=ELIG)
    computed = await window_stats(pool, window_days=30, as_of=as_of, eligibility=ELIG, write=False)
    columns = ["trader", "ts", "realized_usdc", "notional_usdc", "collateral_usdc", "hold_seconds"]
    window = (pl.col("ts") > as_of - 30 * DAY) & (pl.col("ts") <= as_of)
    ours = computed.closes.filter(window).select(columns).with_columns(pl.col("trader").cast(pl.Utf8))
    theirs = (
        closes_frame(tracker.closes)
        .filter(window)
        .select(columns)
        .with_columns(pl.col("trader").cast(pl.Utf8))
    )
    assert ours.height == theirs.height > 0
    assert ours.sort(columns).equals(theirs.sort(columns))
    return computed.stats, tracker.stats(as_of)


def assert_same(got: pl.DataFrame, expected: pl.DataFrame) -> None:
    assert got.height == expected.height > 0
    for column in expected.columns:
        a, b = got[column], expected[column]
        if a.dtype.is_float():
            close = (
                (a == b) | ((a - b).abs() <= 1e-9 * b.abs().clip(lower_bound=1.0)) | (a.is_nan() & b.is_nan())
            )
            assert close.fill_null(a.is_null() & b.is_null()).all(), column
        else:
            assert a.to_list() == b.to_list(), column


@pytest.fixture(scope="module")
def population() -> list[TradeEvent]:
    from research.sim.run import simulate

    sim = simulate(30, 50, seed=4, prices="synthetic", workers=1)
    events = events_from_frame(sim.events)
    t0 = max(e.ts for e in events) - 5 * DAY
    return events + edge_cases("0x" + "e" * 40, t0)


async def test_window_stats_equal_the_tracker_across_windows(
    migrated_pool: asyncpg.Pool, population: list[TradeEvent]
) -> None:
    async with migrated_pool.acquire() as conn:
        await insert_events(conn, population)
    last = max(e.ts for e in population)
    for as_of in (last - 5 * DAY, last - 20 * DAY, last):
        got, expected = await stats_both_ways(migrated_pool, as_of)
        assert_same(got, expected)


async def test_the_binary_read_asks_for_ids_only_where_they_order_events(
    migrated_pool: asyncpg.Pool, population: list[TradeEvent]
) -> None:
    async with migrated_pool.acquire() as conn:
        await insert_events(conn, population)
        as_of = max(e.ts for e in population) - 5 * DAY
        async with window_snapshot(conn):
            binary = await load_window_events(conn, start=as_of - 30 * DAY, as_of=as_of)
            text = await load_window_events(conn, start=as_of - 30 * DAY, as_of=as_of, exact_ids=True)
            assert binary["event_id"].null_count() == binary.height  # no id travelled
            assert text["event_id"].null_count() == 0
            with pytest.raises(TiedEvents) as tie:
                realized_closes(binary)
            assert tie.value.rows.height == 2  # the two partial closes of one second
            named = await with_event_ids(conn, binary, tie.value.rows)
    assert named is not None and named["event_id"].null_count() == named.height - 2
    window = pl.col("ts") > as_of - 30 * DAY
    columns = ["trader", "ts", "realized_usdc", "notional_usdc", "collateral_usdc"]
    a = realized_closes(named).filter(window).with_columns(pl.col("trader").cast(pl.Utf8))
    b = realized_closes(text).filter(window).with_columns(pl.col("trader").cast(pl.Utf8))
    assert a.height == b.height > 0
    assert a.drop("event_id").sort(columns).equals(b.drop("event_id").sort(columns))


@pytest.mark.parametrize(
    "odd",
    [
        lambda e: replace(e, trader="0xabc"),  # not a 42-character address: the text read
        lambda e: replace(e, leverage=Decimal(123_456_789)),  # past 1e8: the text read
    ],
    ids=["short-trader", "huge-leverage"],
)
async def test_rows_the_binary_shape_cannot_carry_take_the_text_read(
    migrated_pool: asyncpg.Pool, population: list[TradeEvent], odd
) -> None:
    changed = [odd(e) if e.trader == population[0].trader else e for e in population]
    as_of = max(e.ts for e in changed) - 5 * DAY
    async with migrated_pool.acquire() as conn:
        await insert_events(conn, changed)
        async with window_snapshot(conn):
            read = await load_window_events(conn, start=as_of - 30 * DAY, as_of=as_of)
    assert read["event_id"].null_count() == 0  # the text read: every id
    got, expected = await stats_both_ways(migrated_pool, as_of)
    assert_same(got, expected)
