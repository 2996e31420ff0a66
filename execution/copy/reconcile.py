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

from execution.copy import journal, notices, positions, profiles
from execution.copy.model import CopyAction
from execution.copy.notices import Notice, NoticeKind
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
    async with pool.acquire() as conn:
        rows = await profiles.on_venue(conn, venue.name)
    drifts: list[Drift] = []
    for r in rows:
        profile = _Profile(r["id"], r["user_id"], r["wallet_address"] or str(r["id"]))
        drifts += await _reconcile_profile(pool, venue, profile, fix)
    return drifts


async def _in_flight(pool: asyncpg.Pool, profile_id: int) -> bool:
    async with pool.acquire() as conn:
        return await journal.in_flight(conn, profile_id)


async def _reconcile_profile(pool: asyncpg.Pool, venue: Venue, profile: _Profile, fix: bool) -> list[Drift]:
    if await _in_flight(pool, profile.id):
        return []
    on_venue = {p.position_ref: p for p in await venue.open_positions(profile.account)}
    async with pool.acquire() as conn:
        booked = await positions.open_of_profile(conn, profile.id)
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
        async with pool.acquire() as conn:
            closed = await positions.last_closed_matching(
                conn, profile.id, held.position_ref, held.side.value, held.entry_price
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
            await positions.close_by_venue(conn, booked["id"])
        elif fixable and kind is DriftKind.SIZE_CHANGED:
            assert booked is not None and held is not None
            await positions.resize(conn, booked["id"], held.collateral_usdc)
        which = booked["id"] if booked is not None else held.entry_price if held else ""
        await notices.write(
            conn,
            [
                Notice(
                    profile.id,
                    NoticeKind.DRIFT,
                    f"drift:{profile.id}:{kind.value}:{ref}:{which}",
                    {
                        "position_ref": ref,
                        "drift": kind.value,
                        "journal_collateral_usdc": journal_usdc,
                        "venue_collateral_usdc": venue_usdc,
                        "corrected": fixable and kind is not DriftKind.STILL_OPEN_ON_VENUE,
                    },
                )
            ],
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
