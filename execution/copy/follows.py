"""Followers, their profiles and per-leader settings in PostgreSQL (`copytrader_profiles`,
`copy_configurations`, `leader_follows`)."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Any

import asyncpg

from execution.copy.model import Follow, FollowConfig, Profile, SizingMode

_FOLLOW_QUERY = """
SELECT f.id AS follow_id, f.leader_address, extract(epoch FROM f.followed_at)::bigint AS followed_at,
       p.id AS profile_id, p.user_id, p.venue, p.wallet_address, p.equity_usdc, p.peak_equity_usdc,
       p.daily_loss_limit_usdc, p.max_drawdown_pct, p.max_total_exposure_usdc, p.status AS profile_status,
       c.sizing_mode, c.fixed_collateral_usdc, c.equity_pct, c.multiplier, c.per_trade_cap_usdc,
       c.leverage_cap, c.max_position_usdc, c.pair_allow, c.pair_block, c.side_filter, c.reverse,
       c.copy_tp_sl, c.copy_existing, c.slippage_bps, c.regime_guard
FROM leader_follows f
JOIN copytrader_profiles p ON p.id = f.profile_id
JOIN copy_configurations c ON c.id = f.config_id
WHERE f.status = 'active'
"""


def _follow(r: asyncpg.Record) -> Follow:
    profile = Profile(
        id=r["profile_id"],
        user_id=r["user_id"],
        venue=r["venue"],
        equity_usdc=r["equity_usdc"],
        peak_equity_usdc=r["peak_equity_usdc"],
        daily_loss_limit_usdc=r["daily_loss_limit_usdc"],
        max_drawdown_pct=r["max_drawdown_pct"],
        max_total_exposure_usdc=r["max_total_exposure_usdc"],
        status=r["profile_status"],
        wallet_address=r["wallet_address"],
    )
    config = FollowConfig(
        sizing_mode=SizingMode(r["sizing_mode"]),
        fixed_collateral_usdc=r["fixed_collateral_usdc"],
        equity_pct=r["equity_pct"],
        multiplier=r["multiplier"],
        per_trade_cap_usdc=r["per_trade_cap_usdc"],
        leverage_cap=r["leverage_cap"],
        max_position_usdc=r["max_position_usdc"],
        pair_allow=frozenset(r["pair_allow"]) if r["pair_allow"] is not None else None,
        pair_block=frozenset(r["pair_block"] or ()),
        side_filter=r["side_filter"],
        reverse=r["reverse"],
        copy_tp_sl=r["copy_tp_sl"],
        copy_existing=r["copy_existing"],
        slippage_bps=r["slippage_bps"],
        regime_guard=r["regime_guard"],
    )
    return Follow(r["follow_id"], profile, config, r["leader_address"], r["followed_at"])


async def follows_of(conn: asyncpg.Connection, leader: str, venue: str) -> list[Follow]:
    """The live follows of `leader` by profiles trading on `venue` (one engine per venue)."""
    rows = await conn.fetch(
        _FOLLOW_QUERY + " AND f.leader_address = $1 AND p.venue = $2 ORDER BY f.id", leader.lower(), venue
    )
    return [_follow(r) for r in rows]


async def follows_of_profile(conn: asyncpg.Connection, profile_id: int) -> list[Follow]:
    rows = await conn.fetch(_FOLLOW_QUERY + " AND p.id = $1 ORDER BY f.id", profile_id)
    return [_follow(r) for r in rows]


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
    """The profile `name` of this user, created (with the user) if new; its id."""
    async with conn.transaction():
        user_id = await conn.fetchval(
            "INSERT INTO users (telegram_user_id) VALUES ($1) ON CONFLICT (telegram_user_id) DO UPDATE "
            "SET telegram_user_id = EXCLUDED.telegram_user_id RETURNING id",
            telegram_user_id,
        )
        return await conn.fetchval(
            """
            INSERT INTO copytrader_profiles (user_id, name, venue, wallet_address, equity_usdc, peak_equity_usdc,
                daily_loss_limit_usdc, max_drawdown_pct, max_total_exposure_usdc)
            VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8)
            ON CONFLICT (user_id, name) DO UPDATE SET venue = EXCLUDED.venue
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


async def add_follow(conn: asyncpg.Connection, profile_id: int, leader: str, config: FollowConfig) -> int:
    """Follow `leader` with `config`; an existing live follow of the same leader is replaced."""
    values: dict[str, Any] = asdict(config)
    values["sizing_mode"] = config.sizing_mode.value
    values["pair_allow"] = sorted(config.pair_allow) if config.pair_allow is not None else None
    values["pair_block"] = sorted(config.pair_block)
    async with conn.transaction():
        config_id = await conn.fetchval(
            """
            INSERT INTO copy_configurations (profile_id, sizing_mode, fixed_collateral_usdc, equity_pct, multiplier,
                per_trade_cap_usdc, leverage_cap, max_position_usdc, pair_allow, pair_block, side_filter, reverse,
                copy_tp_sl, copy_existing, slippage_bps, regime_guard)
            VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16) RETURNING id
            """,
            profile_id,
            values["sizing_mode"],
            values["fixed_collateral_usdc"],
            values["equity_pct"],
            values["multiplier"],
            values["per_trade_cap_usdc"],
            values["leverage_cap"],
            values["max_position_usdc"],
            values["pair_allow"],
            values["pair_block"],
            values["side_filter"],
            values["reverse"],
            values["copy_tp_sl"],
            values["copy_existing"],
            values["slippage_bps"],
            values["regime_guard"],
        )
        await conn.execute(
            "UPDATE leader_follows SET status = 'stopped', unfollowed_at = now() "
            "WHERE profile_id = $1 AND leader_address = $2 AND status <> 'stopped'",
            profile_id,
            leader.lower(),
        )
        return await conn.fetchval(
            "INSERT INTO leader_follows (profile_id, config_id, leader_address) VALUES ($1, $2, $3) RETURNING id",
            profile_id,
            config_id,
            leader.lower(),
        )


async def stop_follow(conn: asyncpg.Connection, follow_id: int) -> bool:
    done = await conn.execute(
        "UPDATE leader_follows SET status = 'stopped', unfollowed_at = now() WHERE id = $1 AND status <> 'stopped'",
        follow_id,
    )
    return done.endswith(" 1")
