"""Reconciliation: the follower's open positions on the venue against the journal's open copies.

Drift is what happens outside the engine: a copy closed (or partly closed) by hand on the venue,
a liquidation the leader did not have, a close of ours that never landed, a trade the follower
placed himself. Each is flagged (a log line, a metric and a notification); with `fix` the
journal is brought in line with the venue, and a copy the journal believes closed but the venue
still holds is closed on the venue. Positions the journal never knew (manual trades) are only
reported: they are the follower's own.

A profile with intents in flight is skipped for the round: the venue may already show a fill the
journal is about to record, and "correcting" it would lose the fill's PnL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

import asyncpg

from execution.copy import journal
from execution.copy.model import CopyAction
from execution.venues.base import Venue, VenueOrder, VenuePosition
from infra.logs import log_fields
from infra.metrics import counter

log = logging.getLogger("vanta.reconcile")
DRIFTS = counter("vanta_copy_drift_total", "Differences between the venue and the journal", ("kind",))


class DriftKind(StrEnum):
    CLOSED_ON_VENUE = "closed_on_venue"  # the journal's open copy is gone from the venue
    SIZE_CHANGED = "size_changed"  # the venue holds a different collateral than the journal
    STILL_OPEN_ON_VENUE = "still_open_on_venue"  # the journal closed it; the venue did not
    UNTRACKED = "untracked"  # on the venue, never a copy: the follower's own trade


@dataclass(frozen=True)
class Drift:
    profile_id: int
    kind: DriftKind
    position_ref: str
    journal_collateral_usdc: int | None
    venue_collateral_usdc: int | None
    fixed: bool = False


@dataclass(frozen=True)
class _Profile:
    id: int
    user_id: int
    account: str


async def reconcile(pool: asyncpg.Pool, venue: Venue, *, fix: bool = False) -> list[Drift]:
    rows = await pool.fetch(
        "SELECT id, user_id, wallet_address FROM copytrader_profiles WHERE venue = $1 AND status <> 'stopped' "
        "ORDER BY id",
        venue.name,
    )
    drifts: list[Drift] = []
    for r in rows:
        profile = _Profile(r["id"], r["user_id"], r["wallet_address"] or str(r["id"]))
        drifts += await _reconcile_profile(pool, venue, profile, fix)
    return drifts


async def _in_flight(pool: asyncpg.Pool, profile_id: int) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM copy_intents WHERE profile_id = $1 AND state = ANY($2::text[])",
            profile_id,
            list(journal.OPEN_STATES),
        )
    )


async def _reconcile_profile(pool: asyncpg.Pool, venue: Venue, profile: _Profile, fix: bool) -> list[Drift]:
    if await _in_flight(pool, profile.id):
        return []
    on_venue = {p.position_ref: p for p in await venue.open_positions(profile.account)}
    booked = await pool.fetch(
        "SELECT id, venue_position_ref, collateral_usdc FROM copy_positions WHERE profile_id = $1 AND status = 'open'",
        profile.id,
    )
    if await _in_flight(pool, profile.id):  # the engine started on it while we were reading
        return []
    drifts: list[Drift] = []
    for b in booked:
        held = on_venue.pop(b["venue_position_ref"], None)
        if held is None:
            drifts.append(
                await _apply(pool, profile, DriftKind.CLOSED_ON_VENUE, b["venue_position_ref"], b, None, fix)
            )
        elif held.collateral_usdc != b["collateral_usdc"]:
            drifts.append(
                await _apply(pool, profile, DriftKind.SIZE_CHANGED, held.position_ref, b, held, fix)
            )
    for held in on_venue.values():
        closed = await pool.fetchrow(
            "SELECT id, venue_position_ref, collateral_usdc FROM copy_positions WHERE profile_id = $1 "
            "AND venue_position_ref = $2 AND status = 'closed' AND side = $3 AND entry_price = $4 "
            "ORDER BY id DESC LIMIT 1",
            profile.id,
            held.position_ref,
            held.side.value,
            held.entry_price,
        )
        kind = DriftKind.STILL_OPEN_ON_VENUE if closed is not None else DriftKind.UNTRACKED
        drift = await _apply(pool, profile, kind, held.position_ref, closed, held, fix)
        if drift.fixed and kind is DriftKind.STILL_OPEN_ON_VENUE:
            await _close_on_venue(venue, profile, held, closed["id"])  # type: ignore[index]
        drifts.append(drift)
    return drifts


async def _apply(
    pool: asyncpg.Pool,
    profile: _Profile,
    kind: DriftKind,
    ref: str,
    booked: asyncpg.Record | None,
    held: VenuePosition | None,
    fix: bool,
) -> Drift:
    journal_usdc = booked["collateral_usdc"] if booked is not None else None
    venue_usdc = held.collateral_usdc if held is not None else None
    fixable = fix and kind is not DriftKind.UNTRACKED
    DRIFTS.labels(kind=kind.value).inc()
    log.warning(
        "venue and journal differ",
        extra=log_fields(
            profile=profile.id, kind=kind.value, position=ref, journal=journal_usdc, venue=venue_usdc
        ),
    )
    async with pool.acquire() as conn, conn.transaction():
        if fixable and kind is DriftKind.CLOSED_ON_VENUE:
            assert booked is not None
            await conn.execute(
                "UPDATE copy_positions SET status = 'closed', closed_at = now(), closed_by = 'venue' "
                "WHERE id = $1 AND status = 'open'",
                booked["id"],
            )
        elif fixable and kind is DriftKind.SIZE_CHANGED:
            assert booked is not None and held is not None
            await conn.execute(
                "UPDATE copy_positions SET collateral_usdc = $2 WHERE id = $1 AND status = 'open'",
                booked["id"],
                held.collateral_usdc,
            )
        text = {
            DriftKind.CLOSED_ON_VENUE: f"Your copied position {ref} is no longer open on the venue",
            DriftKind.SIZE_CHANGED: f"Your copied position {ref} changed size on the venue",
            DriftKind.STILL_OPEN_ON_VENUE: f"Position {ref} is still open on the venue though its copy was closed",
            DriftKind.UNTRACKED: f"Position {ref} on the venue is not a copy; Vanta leaves it alone",
        }[kind]
        await conn.execute(
            "INSERT INTO notifications (user_id, kind, dedupe_key, text, payload) "
            "VALUES ($1, 'drift', $2, $3, jsonb_build_object('position_ref', $4::text, 'drift', $5::text)) "
            "ON CONFLICT (dedupe_key) DO NOTHING",
            profile.user_id,
            f"drift:{profile.id}:{kind.value}:{ref}:{booked['id'] if booked is not None else held.entry_price if held else ''}",
            text + (" (journal corrected)" if fixable and kind is not DriftKind.STILL_OPEN_ON_VENUE else ""),
            ref,
            kind.value,
        )
    return Drift(profile.id, kind, ref, journal_usdc, venue_usdc, fixable)


async def _close_on_venue(venue: Venue, profile: _Profile, held: VenuePosition, copy_id: int) -> None:
    """Close what the journal already closed. The client ref is fixed per copy, so a repeat of
    this round asks the venue about the same order instead of sending another."""
    ref = f"reconcile:{copy_id}"
    if ref in await venue.lookup([ref]):
        return
    order = VenueOrder(
        client_ref=ref,
        account=profile.account,
        action=CopyAction.CLOSE,
        pair_index=held.pair_index,
        side=held.side,
        collateral_usdc=held.collateral_usdc,
        position_ref=held.position_ref,
    )
    (result,) = await venue.submit_many([order])
    log.warning(
        "closed a position the journal had closed",
        extra=log_fields(
            profile=profile.id, position=held.position_ref, status=result.status, reason=result.reason
        ),
    )
