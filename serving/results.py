"""Answers written for the rest of the system: the current regime per pair into
`market_regime_data`, the analytics per trader into `trader_analytics` (the bot, reports and SQL
users read these without asking the service)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

import asyncpg
import numpy as np

from serving.population import Population
from serving.schemas import RegimeState

SKILL_ONLY_MODEL = "skill_stats_only"  # model_name of rows scored without a registered analyzer


def _ts(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def write_regimes(conn: asyncpg.Connection, regimes: Iterable[RegimeState]) -> int:
    """One row per pair and hour and model version; rewriting the same hour is a no-op."""
    rows = [
        (
            r.pair,
            _ts(r.as_of),
            r.model.split(":", 1)[-1],
            r.color,
            json.dumps({**r.probabilities, "confidence": r.confidence}),
            json.dumps({"volatility_1h": r.volatility_1h, "trend": r.trend, "model": r.model}),
        )
        for r in regimes
    ]
    if not rows:
        return 0
    written = await conn.fetch(
        "INSERT INTO market_regime_data (pair, ts, model_version, regime, probabilities, features) "
        "SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[]) "
        "ON CONFLICT DO NOTHING RETURNING 1",
        *map(list, zip(*rows, strict=True)),
    )
    return len(written)


def _num(value: object) -> float | None:
    if value is None:
        return None
    v = float(value)  # type: ignore[arg-type]
    return v if np.isfinite(v) else None


async def write_analytics(conn: asyncpg.Connection, population: Population) -> int:
    """Every scored trader at the population's as-of time, keyed by (trader, model, as-of)."""
    model_name, version = SKILL_ONLY_MODEL, "-"
    if population.analyzer_tag:
        model_name, version = population.analyzer_tag.split(":", 1)
    as_of = _ts(population.as_of)
    rows = [
        (
            r["trader"],
            _num(r["score"]),
            r["archetype"],
            _num(r["anomaly_score"]),
            json.dumps(
                {
                    "rank": r["rank"],
                    "p_win_7d": _num(r["p_win_7d"]),
                    "expected_pnl_7d_usdc": _num(r["expected_pnl_7d_usdc"]),
                    "anomaly": bool(r["anomaly"]),
                    "flags": list(r["flags"] or []),
                    "psr": _num(r["psr"]),
                    "dsr": _num(r["dsr"]),
                    "min_trl_days": _num(r["min_trl_days"]),
                    "trades": r["trades"],
                }
            ),
        )
        for r in population.rows.iter_rows(named=True)
    ]
    if not rows:
        return 0
    await conn.execute(
        "INSERT INTO trader_analytics (trader, model_name, model_version, as_of, skill_score, archetype, "
        "anomaly_score, features) "
        "SELECT t, $2, $3, $4, s, a, x, f FROM unnest($1::text[], $5::float8[], $6::text[], $7::float8[], "
        "$8::jsonb[]) AS u(t, s, a, x, f) "
        "ON CONFLICT (trader, model_name, as_of) DO UPDATE SET model_version = EXCLUDED.model_version, "
        "skill_score = EXCLUDED.skill_score, archetype = EXCLUDED.archetype, "
        "anomaly_score = EXCLUDED.anomaly_score, features = EXCLUDED.features",
        [r[0] for r in rows],
        model_name,
        version,
        as_of,
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
    )
    return len(rows)
