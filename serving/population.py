"""The traders the service answers about: features, analyzer rows and stored stats of everyone,
computed once per data change and then read by every request (cards, leaderboard pages, scores).

Where each number comes from, so a card equals what the research functions give on the same data:
- features, PSR/DSR/MinTRL/bootstrap p (90-day lookback), score, forecast, anomaly, flags, archetype
  and rank: `research.pipeline.Tables.features_at(as_of)` and `research.analyzer.score_frame`, with
  `as_of` one second after the latest stored event, exactly as `vanta analyze` computes them;
- trades, volume, net PnL and eligibility over the stats window: the `trader_stats` table the tracker
  keeps (exact micro-USDC, the leader eligibility settings);
- the equity curve: the exact ledger (`research.ledger`) over the trader's own events.

This module is values in, values out (apart from the PostgreSQL readers at the bottom): the
service holds a `Population`, replaces it whole when the data or the model changes, and never
mutates it, so a request always reads one consistent version.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np
import polars as pl

from data.event_frames import EVENT_SCHEMA
from data.pairs import Pair
from research import anomaly
from research.analyzer import ROW_COLUMNS, score_frame
from research.features import FEATURES
from research.ledger import LedgerError, PositionLedger
from research.pipeline import Tables
from serving.schemas import (
    EquityPoint,
    Flag,
    Forecast,
    LeaderboardPage,
    LeaderboardRow,
    LeaderboardSort,
    Opportunity,
    RegimeState,
    ScoreItem,
    Skill,
    TraderCard,
    TraderScore,
    TraderStats,
)
from serving.training import EVENTS_SQL

FEATURE_COLUMNS = [*FEATURES, "log_trades_per_day"]
EQUITY_POINTS = 500  # a card's curve: every close up to this many, else evenly thinned (last kept)
MAIN_PAIRS = 3  # pairs an opportunity may name for a trader: their most traded in 30 days
DAY = 86_400


@dataclass(frozen=True)
class Model:
    """A model from the store: `tag` is "name:version"."""

    name: str
    tag: str
    obj: Any


@dataclass(frozen=True)
class Population:
    as_of: int  # features see events strictly before this
    data_version: str
    features: pl.DataFrame  # research.features.trader_features rows
    rows: pl.DataFrame  # research.analyzer.score_frame rows (ranked) + stored stats + main pairs
    stats_window_days: int | None
    analyzer_tag: str | None
    computed_at: float = field(default_factory=time.time)
    index: Mapping[str, int] = field(default_factory=dict)  # trader → position in `rows`
    feature_index: Mapping[str, int] = field(default_factory=dict)

    @property
    def latest_event(self) -> int | None:
        return self.as_of - 1 if self.features.height else None


def main_pairs(tables: Tables, as_of: int, catalogue: Mapping[int, Pair]) -> pl.DataFrame:
    """trader → the symbols of the pairs they closed most in the 30 days before `as_of`."""
    recent = tables.trades.filter((pl.col("ts") < as_of) & (pl.col("ts") >= as_of - 30 * DAY))
    symbols = {i: p.symbol for i, p in catalogue.items()}
    return (
        recent.group_by("trader", "pair_index")
        .agg(n=pl.len())
        .sort(["trader", "n", "pair_index"], descending=[False, True, False])
        .group_by("trader", maintain_order=True)
        .agg(pairs=pl.col("pair_index").head(MAIN_PAIRS))
        .with_columns(
            pl.col("pairs").list.eval(pl.element().replace_strict(symbols, default=None)).list.drop_nulls()
        )
    )


def build_population(
    events: pl.DataFrame,
    stats: pl.DataFrame,
    analyzer: Model | None,
    catalogue: Mapping[int, Pair],
    *,
    data_version: str,
    features: pl.DataFrame | None = None,
    pairs: pl.DataFrame | None = None,
) -> Population:
    """Everything requests read, from the canonical event frame (or cached features and pairs)."""
    as_of = int(events["ts"].max()) + 1 if events.height else int(time.time())
    if features is None or pairs is None:
        tables = Tables.from_events(events)
        features = tables.features_at(as_of)
        pairs = main_pairs(tables, as_of, catalogue)
    return population_from_features(features, pairs, stats, analyzer, as_of=as_of, data_version=data_version)


def population_from_features(
    features: pl.DataFrame,
    pairs: pl.DataFrame,
    stats: pl.DataFrame,
    analyzer: Model | None,
    *,
    as_of: int,
    data_version: str,
) -> Population:
    rows = score_frame(features, analyzer.obj if analyzer else None) if features.height else _NO_ROWS
    window = int(stats["window_days"][0]) if stats.height else None
    stat_cols = stats.select(
        "trader",
        "eligible",
        stats_trades="trades",
        net_pnl_usdc="net_pnl_usdc",
    )
    rows = (
        rows.join(stat_cols, on="trader", how="left")
        .join(pairs, on="trader", how="left")
        .with_columns(
            eligible=pl.col("eligible").fill_null(False),
            flagged=pl.col("anomaly").fill_null(False) | (pl.col("flags").list.len() > 0),
        )
        .sort("rank")
    )
    return Population(
        as_of=as_of,
        data_version=data_version,
        features=features,
        rows=rows,
        stats_window_days=window,
        analyzer_tag=analyzer.tag if analyzer else None,
        index={t: i for i, t in enumerate(rows["trader"].to_list())},
        feature_index={t: i for i, t in enumerate(features["trader"].to_list())},
    )


_NO_ROWS = pl.DataFrame(
    schema={
        **dict.fromkeys(ROW_COLUMNS, pl.Float64),
        "trader": pl.Utf8,
        "rank": pl.Int64,
        "anomaly": pl.Boolean,
        "flags": pl.List(pl.Utf8),
        "archetype": pl.Utf8,
        "trades": pl.Int64,
        "min_trl_days": pl.Float64,
        "score_source": pl.Utf8,
    }
)


def _float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _score(trader: str, row: Mapping[str, Any] | None) -> TraderScore:
    if row is None:
        return TraderScore(trader=trader, known=False)
    return TraderScore(
        trader=trader,
        known=True,
        score=_float(row["score"]),
        p_win_7d=_float(row["p_win_7d"]),
        expected_pnl_7d_usdc=_float(row["expected_pnl_7d_usdc"]),
        anomaly=bool(row["anomaly"]),
        anomaly_score=_float(row["anomaly_score"]),
        flags=list(row["flags"] or []),
        archetype=row["archetype"],
    )


def score_items(population: Population, items: list[ScoreItem], analyzer: Model | None) -> list[TraderScore]:
    """Scores in the order asked: known traders from the population, feature rows scored now."""
    out: list[TraderScore | None] = [None] * len(items)
    given = [(i, it) for i, it in enumerate(items) if it.features is not None]
    for i, it in enumerate(items):
        if it.features is None:
            pos = population.index.get(it.trader.lower())
            out[i] = _score(it.trader, population.rows.row(pos, named=True) if pos is not None else None)
    if given:
        # The row keys are positions, so one trader sent twice is scored twice, as asked.
        frame = pl.DataFrame(
            [{c: (it.features or {}).get(c) for c in FEATURE_COLUMNS} for _, it in given],
            schema=dict.fromkeys(FEATURE_COLUMNS, pl.Float64),
        ).with_columns(trader=pl.Series([f"#{i}" for i, _ in given]))
        scored = score_frame(frame, analyzer.obj if analyzer else None)
        by_key = {r["trader"]: r for r in scored.iter_rows(named=True)}
        for i, it in given:
            out[i] = _score(it.trader, by_key.get(f"#{i}"))
    return [o for o in out if o is not None]


def _stats(row: Mapping[str, Any] | None) -> TraderStats | None:
    if row is None:
        return None
    last = row.get("last_activity")
    return TraderStats(
        window_days=int(row["window_days"]),
        trades=int(row["trades"]),
        volume_usdc=int(row["volume_usdc"]),
        net_pnl_usdc=int(row["net_pnl_usdc"]),
        win_rate=_float(row["win_rate"]),
        sharpe=_float(row["sharpe"]),
        sortino=_float(row["sortino"]),
        max_drawdown_usdc=int(row["max_drawdown_usdc"]),
        avg_leverage=_float(row["avg_leverage"]),
        avg_hold_seconds=_float(row["avg_hold_seconds"]),
        pairs_traded=int(row["pairs_traded"]),
        last_activity=int(last.timestamp()) if last is not None else None,
        eligible=bool(row["eligible"]),
    )


def trader_card(
    population: Population,
    trader: str,
    stats_row: Mapping[str, Any] | None,
    equity: list[EquityPoint],
    models: dict[str, str],
) -> TraderCard | None:
    """The card of one trader, or None when the population has no row for them."""
    trader = trader.lower()
    pos = population.index.get(trader)
    fpos = population.feature_index.get(trader)
    if pos is None or fpos is None:
        return None
    row = population.rows.row(pos, named=True)
    feat = population.features.row(fpos, named=True)
    return TraderCard(
        trader=trader,
        as_of=population.as_of,
        rank=int(row["rank"]),
        score=_float(row["score"]),
        stats=_stats(stats_row),
        skill=Skill(
            psr=_float(feat["psr"]),
            dsr=_float(feat["dsr"]),
            min_trl_days=_float(feat["min_trl_days"]),
            bootstrap_p=_float(feat["bootstrap_p"]),
        ),
        forecast=Forecast(
            p_win_7d=_float(row["p_win_7d"]), expected_pnl_7d_usdc=_float(row["expected_pnl_7d_usdc"])
        ),
        anomaly=bool(row["anomaly"]),
        anomaly_score=_float(row["anomaly_score"]),
        flags=[Flag(code=f, reason=anomaly.REASONS.get(f, f)) for f in row["flags"] or []],
        archetype=row["archetype"],
        equity_curve=equity,
        models=models,
    )


def equity_curve(events: list[Any], limit: int = EQUITY_POINTS) -> list[EquityPoint]:
    """Cumulative realized PnL after each close, exact (the ledger), thinned to `limit` points."""
    ledger = PositionLedger()
    points, total = [], 0
    for event in events:
        try:
            close = ledger.apply(event)
        except LedgerError:
            continue  # refused as the tracker refuses it (logged there), so the curve matches its PnL
        if close is not None:
            total += close.realized_pnl_usdc
            points.append(EquityPoint(ts=close.ts, equity_usdc=total))
    if len(points) > limit:
        step = len(points) / limit
        points = [points[int(i * step)] for i in range(limit - 1)] + [points[-1]]
    return points


def leaderboard_page(
    population: Population,
    *,
    page: int,
    page_size: int,
    sort: LeaderboardSort,
    eligible_only: bool,
    min_trades: int,
    archetype: str | None,
    hide_flagged: bool,
) -> LeaderboardPage:
    """Filter, sort and page the population. Sorting by score keeps the analyzer's order (a flagged
    trader ranks after every unflagged one); PnL sorts by the stats window's exact net PnL."""
    rows = population.rows
    if eligible_only:
        rows = rows.filter(pl.col("eligible"))
    if min_trades:
        rows = rows.filter(pl.col("trades") >= min_trades)
    if archetype:
        rows = rows.filter(pl.col("archetype") == archetype)
    if hide_flagged:
        rows = rows.filter(~pl.col("flagged"))
    if sort == "pnl":
        rows = rows.sort(["net_pnl_usdc", "rank"], descending=[True, False], nulls_last=True)
    elif sort == "psr":
        rows = rows.sort(["psr", "rank"], descending=[True, False], nulls_last=True)
    total = rows.height
    start = (page - 1) * page_size
    window = rows.slice(start, page_size)
    out = [
        LeaderboardRow(
            rank=start + i + 1,
            trader=r["trader"],
            score=_float(r["score"]),
            p_win_7d=_float(r["p_win_7d"]),
            net_pnl_usdc=int(r["net_pnl_usdc"] or 0),
            psr=_float(r["psr"]),
            dsr=_float(r["dsr"]),
            min_trl_days=_float(r["min_trl_days"]),
            trades=int(r["trades"]),
            archetype=r["archetype"],
            flagged=bool(r["flagged"]),
            eligible=bool(r["eligible"]),
        )
        for i, r in enumerate(window.iter_rows(named=True))
    ]
    return LeaderboardPage(
        as_of=population.as_of, sort=sort, page=page, page_size=page_size, total=total, rows=out
    )


def opportunities(
    population: Population, regimes: Mapping[str, RegimeState], *, limit: int, min_p_win: float
) -> list[Opportunity]:
    """Unflagged eligible leaders whose 7-day win probability is at least `min_p_win`, in each of
    their main pairs whose regime is known and not red (green: copy; yellow: copy smaller)."""
    rows = population.rows.filter(
        pl.col("eligible") & ~pl.col("flagged") & (pl.col("p_win_7d") >= min_p_win)
    ).sort("rank")
    out: list[Opportunity] = []
    for r in rows.iter_rows(named=True):
        for pair in r["pairs"] or []:
            state = regimes.get(pair)
            if state is None or state.color == "red":
                continue
            action = "copy" if state.color == "green" else "copy with reduced size"
            out.append(
                Opportunity(
                    trader=r["trader"],
                    pair=pair,
                    regime=state.color,
                    score=_float(r["score"]),
                    p_win_7d=float(r["p_win_7d"]),
                    archetype=r["archetype"],
                    reason=f"7-day win probability {r['p_win_7d']:.0%}; {pair} regime {state.color} "
                    f"({state.trend}, confidence {state.confidence:.0%}): {action}",
                )
            )
            if len(out) >= limit:
                return out
    return out


# --- PostgreSQL readers ---------------------------------------------------------------------------


async def data_version(conn: asyncpg.Connection) -> str:
    """Changes whenever an event is stored or the tracker rewrites its stats."""
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM trade_events) AS n, "
        "(SELECT max(ts) FROM trade_events) AS last_ts, "
        "(SELECT max(updated_at) FROM trader_stats) AS stats_at"
    )
    assert row is not None
    stamp = lambda v: f"{v.timestamp():.6f}" if v is not None else "-"  # noqa: E731
    return f"{row['n']}:{stamp(row['last_ts'])}:{stamp(row['stats_at'])}"


async def load_event_csv(conn: asyncpg.Connection) -> bytes:
    """Every stored event as CSV in the research frame's columns (`serving.training.EVENTS_SQL`, the
    query `vanta analyze` reads). COPY moves bytes; parsing them (`event_frame_from_csv`) can then
    run in a thread, so a refresh of millions of events never stalls the requests being served."""
    buffer = io.BytesIO()
    await conn.copy_from_query(EVENTS_SQL, None, output=buffer, format="csv", header=True)
    return buffer.getvalue()


def event_frame_from_csv(data: bytes) -> pl.DataFrame:
    return pl.read_csv(io.BytesIO(data), schema=EVENT_SCHEMA)


async def load_stats(conn: asyncpg.Connection, window_days: int = 30) -> pl.DataFrame:
    """The tracker's stats rows for `window_days`, or for its shortest stored window if that one
    was never computed (a demo ranks its whole simulated period)."""
    window = await conn.fetchval(
        "SELECT coalesce((SELECT $1::int FROM trader_stats WHERE window_days = $1 LIMIT 1), "
        "(SELECT min(window_days) FROM trader_stats))",
        window_days,
    )
    if window is None:
        return pl.DataFrame(
            schema={
                "trader": pl.Utf8,
                "window_days": pl.Int64,
                "trades": pl.Int64,
                "net_pnl_usdc": pl.Int64,
                "eligible": pl.Boolean,
            }
        )
    rows = await conn.fetch(
        "SELECT trader, window_days, trades, net_pnl_usdc, eligible FROM trader_stats WHERE window_days = $1",
        window,
    )
    return pl.DataFrame(
        [tuple(r) for r in rows],
        schema={
            "trader": pl.Utf8,
            "window_days": pl.Int64,
            "trades": pl.Int64,
            "net_pnl_usdc": pl.Int64,
            "eligible": pl.Boolean,
        },
        orient="row",
    )


async def stats_row(conn: asyncpg.Connection, trader: str, window_days: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT * FROM trader_stats WHERE trader = $1 AND window_days = $2", trader.lower(), window_days
    )
    return dict(row) if row is not None else None
