"""`vanta stats` timed as a whole command (process start to the leaderboard printed) on 1,000 and
10,000 traders' events in a scratch database of the configured PostgreSQL server.

The events are synthetic, generated as columns and COPYed in (an open, sometimes a partial
close, and a close per position, with opening fees), shaped like the simulator's 60 days; no
model is fit to them. `raw` is left empty: `vanta stats` reads the canonical columns only.
"""

from __future__ import annotations

import asyncio
import io
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

TARGETS_S = {1_000: 2.0, 10_000: 5.0}
DAYS = 60
END_TS = 1_767_225_600  # 2026-01-01
POSITIONS_PER_TRADER_DAY = 2.5


def synthetic_events(n_traders: int, *, days: int = DAYS, seed: int = 11) -> pl.DataFrame:
    """trade_events rows (no raw) for `n_traders` over `days` ending at END_TS."""
    rng = np.random.default_rng(seed)
    n = int(n_traders * days * POSITIONS_PER_TRADER_DAY)
    trader = rng.integers(0, n_traders, n)
    pair = rng.integers(0, 20, n).astype(np.int32)
    opened = END_TS - days * 86_400 + rng.integers(0, days * 86_400 - 7_200, n)
    hold = rng.integers(60, 7_200, n)
    collateral = rng.integers(100, 5_000, n) * 1_000_000
    leverage_e10 = rng.integers(2, 50, n) * 10**10
    notional = collateral * (leverage_e10 // 10**10)
    open_fee = notional * 45 // 100_000
    skill = rng.normal(0, 0.002, n_traders)[trader]
    returns = np.clip(rng.standard_t(3, n) * 0.03 + skill, -0.95, 2.0)
    partial = rng.random(n) < 0.2
    first = np.where(partial, collateral // 2, collateral)
    index = np.arange(n) % 40
    ids = pl.DataFrame({"t": trader, "p": pair, "i": index, "o": opened}).select(
        address=pl.lit("0x") + pl.col("t").cast(pl.Utf8).str.zfill(40),
        key=pl.concat_str(
            pl.lit("0x") + pl.col("t").cast(pl.Utf8).str.zfill(40), "p", "i", "o", separator=":"
        ),
    )
    address, key = ids["address"], ids["key"]
    common = {
        "venue": "avantis",
        "source": "bench",
        "trader": address,
        "pair_index": pair,
        "position_key": key,
        "trade_index": index,
        "open_ts": opened,
        "side": np.where(rng.random(n) < 0.5, "long", "short"),
        "leverage": leverage_e10 / 10**10,
    }

    def frame(kind: np.ndarray | str, ts: np.ndarray, suffix: str, **cols: object) -> pl.DataFrame:
        return pl.DataFrame({"event_id": key + suffix, "kind": kind, "ts": ts, **common, **cols})

    opens = frame(
        "open",
        opened,
        ":open",
        collateral_usdc=collateral,
        price=100.0,
        open_fee_usdc=open_fee,
        size_closed_usdc=None,
        usdc_sent=None,
    )
    first_close = frame(
        np.where(partial, "partial_close", "close"),
        opened + hold // 2,
        ":c1",
        collateral_usdc=collateral,
        price=101.0,
        open_fee_usdc=0,
        size_closed_usdc=first,
        usdc_sent=(first * (1 + returns)).astype(np.int64),
    )
    rest = collateral - first
    second = frame(
        "close",
        opened + hold,
        ":c2",
        collateral_usdc=rest,
        price=102.0,
        open_fee_usdc=0,
        size_closed_usdc=rest,
        usdc_sent=(rest * (1 + returns)).astype(np.int64),
    ).filter(pl.Series(partial))
    return pl.concat([opens, first_close, second], how="diagonal_relaxed").with_columns(
        ts=pl.from_epoch("ts", time_unit="s").dt.replace_time_zone("UTC")
    )


async def _load(url: str, events: pl.DataFrame) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        buffer = io.BytesIO()
        events.write_csv(buffer)
        buffer.seek(0)
        # Millions of rows through the table's indexes cost minutes of random reads on a small
        # server; building the indexes once afterwards costs a sort. Same table in the end.
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'trade_events' "
            "AND indexname <> 'trade_events_pkey'"
        )
        await conn.execute("ALTER TABLE trade_events DROP CONSTRAINT trade_events_pkey")
        for r in indexes:
            await conn.execute(f'DROP INDEX "{r["indexname"]}"')
        await conn.copy_to_table(
            "trade_events", source=buffer, columns=events.columns, format="csv", header=True
        )
        await conn.execute("ALTER TABLE trade_events ADD PRIMARY KEY (event_id)")
        for r in indexes:
            await conn.execute(r["indexdef"])
        await conn.execute("ANALYZE trade_events")
    finally:
        await conn.close()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time_stats(url: str, runs: int = 3) -> tuple[float, float, int]:
    vanta = str(Path(sys.executable).parent / "vanta")
    env = {**os.environ, "DATABASE_URL": url}
    walls, cpus, traders = [], [], 0
    for _ in range(runs):
        cpu, started = _children_cpu(), time.perf_counter()
        done = subprocess.run(
            [vanta, "stats", "--json", "--all", "--as-of", str(END_TS), "--window-days", "30"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        walls.append(time.perf_counter() - started)
        cpus.append(_children_cpu() - cpu)
        import json

        traders = json.loads(done.stdout)["traders"]
    return statistics.median(walls), statistics.median(cpus), traders


async def _bench(n_traders: int) -> dict[str, object]:
    from infra import db, embedded
    from infra.settings import get_settings

    events = synthetic_events(n_traders)
    async with db.scratch_database(embedded.database_url(get_settings())) as url:
        await _load(url, events)
        wall, cpu, traders = await asyncio.to_thread(_time_stats, url)
    name = f"stats_cli_{n_traders // 1000}k_traders_s"
    return {
        name: round(wall, 2),
        f"{name}_target": TARGETS_S[n_traders],
        f"{name}_cpu": round(cpu, 2),
        f"stats_cli_{n_traders // 1000}k_events": events.height,
        f"stats_cli_{n_traders // 1000}k_traders_ranked": traders,
    }


def run() -> dict[str, object]:
    figures: dict[str, object] = {}
    for n in TARGETS_S:
        figures.update(asyncio.run(_bench(n)))
    return figures
