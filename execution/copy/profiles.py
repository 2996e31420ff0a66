"""Followers and their profiles in PostgreSQL (`users`, `copytrader_profiles`): who owns a
profile, its equity and limits, its status. Values arrive here validated (`service.py`); the
CHECK constraints are the last line."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from execution.copy.model import ProfileStatus

PROFILE_COLUMNS = (
    "p.id, p.user_id, u.telegram_user_id, u.is_admin, p.name, p.venue, p.wallet_address, p.equity_usdc, "
    "p.peak_equity_usdc, p.daily_loss_limit_usdc, p.max_drawdown_pct, p.max_total_exposure_usdc, p.status, "
    "p.pause_reason, p.created_at"
)
EDITABLE = frozenset(
    {
        "name",
        "wallet_address",
        "equity_usdc",
        "daily_loss_limit_usdc",
        "max_drawdown_pct",
        "max_total_exposure_usdc",
    }
)


async def ensure_user(conn: asyncpg.Connection, telegram_user_id: int | None) -> int:
    return await conn.fetchval(
        "INSERT INTO users (telegram_user_id) VALUES ($1) ON CONFLICT (telegram_user_id) DO UPDATE "
        "SET telegram_user_id = EXCLUDED.telegram_user_id RETURNING id",
        telegram_user_id,
    )


async def user_of(conn: asyncpg.Connection, telegram_user_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, is_admin FROM users WHERE telegram_user_id = $1", telegram_user_id)


async def ensure_profile(
    conn: asyncpg.Connection,
    *,
    telegram_user_id: int | None,
    name: str,
    venue: str,
    equity_usdc: int | None,
    wallet_address: str | None = None,
    daily_loss_limit_usdc: int | None = None,
    max_drawdown_pct: Decimal | None = None,
    max_total_exposure_usdc: int | None = None,
) -> int:
    """The live profile `name` of this user, created (with the user) if new; its id."""
    async with conn.transaction():
        user_id = await ensure_user(conn, telegram_user_id)
        return await conn.fetchval(
            """
            INSERT INTO copytrader_profiles (user_id, name, venue, wallet_address, equity_usdc, peak_equity_usdc,
                daily_loss_limit_usdc, max_drawdown_pct, max_total_exposure_usdc)
            VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8)
            ON CONFLICT (user_id, name) WHERE deleted_at IS NULL DO UPDATE SET venue = EXCLUDED.venue
            RETURNING id
            """,
            user_id,
            name,
            venue,
            wallet_address.lower() if wallet_address else None,
            equity_usdc,
            daily_loss_limit_usdc,
            max_drawdown_pct,
            max_total_exposure_usdc,
        )


async def profile(conn: asyncpg.Connection, profile_id: int) -> asyncpg.Record | None:
    """A live (not deleted) profile with its owner."""
    return await conn.fetchrow(
        f"SELECT {PROFILE_COLUMNS} FROM copytrader_profiles p JOIN users u ON u.id = p.user_id "
        "WHERE p.id = $1 AND p.deleted_at IS NULL",
        profile_id,
    )


async def profile_named(conn: asyncpg.Connection, telegram_user_id: int, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {PROFILE_COLUMNS} FROM copytrader_profiles p JOIN users u ON u.id = p.user_id "
        "WHERE u.telegram_user_id = $1 AND p.name = $2 AND p.deleted_at IS NULL",
        telegram_user_id,
        name,
    )


async def profiles_of(conn: asyncpg.Connection, telegram_user_id: int | None) -> list[asyncpg.Record]:
    """A user's live profiles (every user's when None: the operator)."""
    return await conn.fetch(
        f"SELECT {PROFILE_COLUMNS} FROM copytrader_profiles p JOIN users u ON u.id = p.user_id "
        "WHERE p.deleted_at IS NULL AND ($1::bigint IS NULL OR u.telegram_user_id = $1) ORDER BY p.id",
        telegram_user_id,
    )


async def on_venue(conn: asyncpg.Connection, venue: str) -> list[asyncpg.Record]:
    """Live profiles trading on `venue` (reconciliation's round)."""
    return await conn.fetch(
        "SELECT id, user_id, wallet_address FROM copytrader_profiles WHERE venue = $1 AND deleted_at IS NULL "
        "ORDER BY id",
        venue,
    )


async def update(conn: asyncpg.Connection, profile_id: int, changes: dict[str, Any]) -> None:
    """Edit a profile's settings; a new equity also restarts the drawdown's peak from it."""
    unknown = set(changes) - EDITABLE
    assert not unknown, f"not editable: {unknown}"
    if not changes:
        return
    values = dict(changes)
    if "equity_usdc" in values:
        values["peak_equity_usdc"] = values["equity_usdc"]
    names = sorted(values)
    sets = ", ".join(f"{n} = ${k + 2}" for k, n in enumerate(names))
    await conn.execute(
        f"UPDATE copytrader_profiles SET {sets} WHERE id = $1", profile_id, *[values[n] for n in names]
    )


async def set_status(
    conn: asyncpg.Connection, profile_ids: list[int], status: ProfileStatus, reason: str | None = None
) -> list[int]:
    """The profiles whose status changed."""
    rows = await conn.fetch(
        "UPDATE copytrader_profiles SET status = $2, pause_reason = $3 "
        "WHERE id = ANY($1::bigint[]) AND deleted_at IS NULL AND (status <> $2 OR pause_reason IS DISTINCT FROM $3) "
        "RETURNING id",
        profile_ids,
        status.value,
        reason,
    )
    return [r["id"] for r in rows]


async def delete(conn: asyncpg.Connection, profile_id: int) -> None:
    """Gone from every listing and its name free again; its history (intents, copies) stays."""
    await conn.execute(
        "UPDATE copytrader_profiles SET deleted_at = now(), status = 'stopped' WHERE id = $1", profile_id
    )


async def apply_realized(conn: asyncpg.Connection, pnl_by_profile: dict[int, int]) -> list[asyncpg.Record]:
    """Realized PnL into the profiles' equity (and peak); returns their limits for the checks."""
    if not pnl_by_profile:
        return []
    return await conn.fetch(
        """
        UPDATE copytrader_profiles p SET equity_usdc = p.equity_usdc + d.pnl,
            peak_equity_usdc = greatest(p.peak_equity_usdc, p.equity_usdc + d.pnl)
        FROM unnest($1::bigint[], $2::bigint[]) AS d(id, pnl) WHERE p.id = d.id
        RETURNING p.id, p.equity_usdc, p.peak_equity_usdc, p.daily_loss_limit_usdc, p.max_drawdown_pct, p.status
        """,
        list(pnl_by_profile),
        list(pnl_by_profile.values()),
    )
