"""Who copies whom with which settings in PostgreSQL (`leader_follows`, `copy_configurations`),
read with their profiles as `Follow`s for the engine. Values arrive validated (`service.py`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import asyncpg

from execution.copy.model import Follow, FollowConfig, Profile, SizingMode

_FOLLOW_QUERY = """
SELECT f.id AS follow_id, f.leader_address, floor(extract(epoch FROM f.followed_at))::bigint AS followed_at,
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


async def _insert_config(conn: asyncpg.Connection, profile_id: int, config: FollowConfig) -> int:
    values: dict[str, Any] = asdict(config)
    values["sizing_mode"] = config.sizing_mode.value
    values["pair_allow"] = sorted(config.pair_allow) if config.pair_allow is not None else None
    values["pair_block"] = sorted(config.pair_block)
    return await conn.fetchval(
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


async def add_follow(conn: asyncpg.Connection, profile_id: int, leader: str, config: FollowConfig) -> int:
    """Follow `leader` with `config`; an existing live follow of the same leader is replaced."""
    async with conn.transaction():
        config_id = await _insert_config(conn, profile_id, config)
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


async def replace_config(
    conn: asyncpg.Connection, follow_id: int, profile_id: int, config: FollowConfig
) -> None:
    """New settings for a live follow (the old configuration row stays for the intents that used it)."""
    async with conn.transaction():
        config_id = await _insert_config(conn, profile_id, config)
        await conn.execute("UPDATE leader_follows SET config_id = $2 WHERE id = $1", follow_id, config_id)


async def stop_follows_of_profile(conn: asyncpg.Connection, profile_id: int) -> None:
    await conn.execute(
        "UPDATE leader_follows SET status = 'stopped', unfollowed_at = now() "
        "WHERE profile_id = $1 AND status <> 'stopped'",
        profile_id,
    )


async def follow(conn: asyncpg.Connection, follow_id: int) -> Follow | None:
    """A live follow by id (its profile included), or None."""
    rows = await conn.fetch(_FOLLOW_QUERY + " AND f.id = $1 AND p.deleted_at IS NULL", follow_id)
    return _follow(rows[0]) if rows else None


async def listing(
    conn: asyncpg.Connection, telegram_user_id: int | None, profile_id: int | None
) -> list[asyncpg.Record]:
    """Live follows for people: a user's (all when None), optionally of one profile."""
    return await conn.fetch(
        "SELECT f.id, f.leader_address, f.status, f.followed_at, p.id AS profile_id, p.name AS profile, p.venue, "
        "u.telegram_user_id, c.sizing_mode, c.fixed_collateral_usdc, c.equity_pct, c.multiplier, "
        "c.per_trade_cap_usdc, c.leverage_cap, c.max_position_usdc, c.side_filter, c.reverse, c.copy_tp_sl, "
        "c.copy_existing, c.slippage_bps, c.regime_guard, c.pair_allow, c.pair_block "
        "FROM leader_follows f JOIN copytrader_profiles p ON p.id = f.profile_id "
        "JOIN users u ON u.id = p.user_id JOIN copy_configurations c ON c.id = f.config_id "
        "WHERE f.status <> 'stopped' AND p.deleted_at IS NULL "
        "AND ($1::bigint IS NULL OR u.telegram_user_id = $1) AND ($2::bigint IS NULL OR p.id = $2) ORDER BY f.id",
        telegram_user_id,
        profile_id,
    )
