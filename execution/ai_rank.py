"""Leaders ranked by the analyzer's score for `vanta stats`: the latest answer per trader that
`vanta scheduler` wrote (`latest_trader_analytics`), joined to the window's stats. A flagged
trader never tops the ranking; PSR, DSR and MinTRL stay beside every rank, and traders the
analyzer has not scored (yet) follow the scored ones, by DSR as before."""

from __future__ import annotations

import asyncpg
import polars as pl

# Columns of `research.stats.leaderboard(rank_by=...)`: (column, descending).
AI_RANK = (("ai_flagged", False), ("ai_score", True), ("dsr", True), ("net_pnl_usdc", True))
AI_SCHEMA = {"trader": pl.Utf8, "ai_score": pl.Float64, "ai_flagged": pl.Boolean, "ai_model": pl.Utf8}


async def latest_ai_scores(conn: asyncpg.Connection) -> pl.DataFrame:
    rows = await conn.fetch(
        "SELECT trader, ai_score, flagged, model_name || ':' || model_version FROM latest_trader_analytics"
    )
    return pl.DataFrame([tuple(r) for r in rows], schema=AI_SCHEMA, orient="row")


def with_ai_scores(stats: pl.DataFrame, scores: pl.DataFrame) -> pl.DataFrame:
    if stats.is_empty():
        return stats
    return stats.join(scores, on="trader", how="left").with_columns(pl.col("ai_flagged").fill_null(False))
