"""Reconciliation against the paper venue's books: each kind of drift is flagged and notified,
`fix` corrects the journal and closes on the venue what the journal already closed, manual trades
are left alone, and a profile with intents in flight is not touched."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

from data.events import EventKind
from execution.copy.engine import CopyEngine, EngineConfig
from execution.copy.reconcile import DriftKind, reconcile
from execution.venues.paper import DictPriceFeed, PaperVenue
from tests.execution.copy_fixtures import BTC, CATALOGUE, add_followers, leader_event

pytestmark = pytest.mark.integration


async def test_drift_is_flagged_then_fixed(migrated_pool: asyncpg.Pool) -> None:
    pool = migrated_pool
    closed_by_hand, resized, reopened, quiet, busy = await add_followers(pool, 5)
    feed = DictPriceFeed({BTC: Decimal(60_000)})
    venue = PaperVenue(pool, CATALOGUE, feed, spread_bps=0)
    async with CopyEngine(pool, None, venue, feed, CATALOGUE, EngineConfig(max_delay_ms=60_000)) as engine:
        assert (await engine.handle(leader_event(EventKind.OPEN)))["filled"] == 5
    assert await reconcile(pool, venue) == []

    ref = lambda pid: pool.fetchval(  # noqa: E731
        "SELECT venue_position_ref FROM copy_positions WHERE profile_id = $1", pid
    )
    # Outside the engine: one copy closed by hand, one shrunk, one closed in the journal only,
    # a manual trade, and a profile whose next copy is still in flight.
    await pool.execute(
        "UPDATE paper_positions SET status = 'closed' WHERE position_ref = $1", await ref(closed_by_hand)
    )
    await pool.execute(
        "UPDATE paper_positions SET collateral_usdc = collateral_usdc - 1000000 WHERE position_ref = $1",
        await ref(resized),
    )
    await pool.execute("UPDATE copy_positions SET status = 'closed' WHERE profile_id = $1", reopened)
    await pool.execute(
        "INSERT INTO paper_positions (position_ref, account, pair_index, side, collateral_usdc, leverage, entry_price) "
        "VALUES ('manual-1', $1, $2, 'short', 50000000, 3, 59000)",
        str(quiet),
        BTC,
    )
    await pool.execute("UPDATE paper_positions SET status = 'closed' WHERE account = $1", str(busy))
    await pool.execute(
        "INSERT INTO copy_intents (intent_id, profile_id, leader_address, leader_event_id, action, state, venue) "
        "VALUES ('in-flight', $1, 'x', 'e', 'open', 'sent', 'paper')",
        busy,
    )

    flagged = await reconcile(pool, venue)
    kinds = {(d.profile_id, d.kind) for d in flagged}
    assert kinds == {
        (closed_by_hand, DriftKind.CLOSED_ON_VENUE),
        (resized, DriftKind.SIZE_CHANGED),
        (reopened, DriftKind.STILL_OPEN_ON_VENUE),
        (quiet, DriftKind.UNTRACKED),
    }
    assert not any(d.fixed for d in flagged)
    size = next(d for d in flagged if d.kind is DriftKind.SIZE_CHANGED)
    assert size.journal_collateral_usdc - size.venue_collateral_usdc == 1_000_000  # type: ignore[operator]
    notes = await pool.fetchval("SELECT count(*) FROM notifications WHERE kind = 'drift'")
    assert notes == 4
    assert await reconcile(pool, venue) != [] and (
        await pool.fetchval("SELECT count(*) FROM notifications WHERE kind = 'drift'") == 4  # once per drift
    )

    fixed = await reconcile(pool, venue, fix=True)
    assert {d.kind for d in fixed if d.fixed} == {
        DriftKind.CLOSED_ON_VENUE,
        DriftKind.SIZE_CHANGED,
        DriftKind.STILL_OPEN_ON_VENUE,
    }
    row = await pool.fetchrow(
        "SELECT status, closed_by FROM copy_positions WHERE profile_id = $1", closed_by_hand
    )
    assert (row["status"], row["closed_by"]) == ("closed", "venue")
    booked = await pool.fetchval("SELECT collateral_usdc FROM copy_positions WHERE profile_id = $1", resized)
    held = await pool.fetchval("SELECT collateral_usdc FROM paper_positions WHERE account = $1", str(resized))
    assert booked == held
    assert (
        await pool.fetchval(
            "SELECT status FROM paper_positions WHERE account = $1 AND position_ref <> 'manual-1'",
            str(reopened),
        )
        == "closed"
    )
    assert await pool.fetchval("SELECT status FROM paper_positions WHERE position_ref = 'manual-1'") == "open"
    # Only the manual trade is left to report, and a repeat closes nothing twice.
    assert {d.kind for d in await reconcile(pool, venue, fix=True)} == {DriftKind.UNTRACKED}
    assert await pool.fetchval("SELECT count(*) FROM paper_orders WHERE client_ref LIKE 'reconcile:%'") == 1
    # The busy profile was never touched.
    assert await pool.fetchval("SELECT status FROM copy_positions WHERE profile_id = $1", busy) == "open"
