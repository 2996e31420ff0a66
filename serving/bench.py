"""Benchmarks of the serving layer over HTTP (`vanta bench`), against the real BentoML server:

- `serving_cold_start_s`: `vanta serve` started → /readyz answers 200 (models loaded from the
  store, the population's features built from PostgreSQL);
- `serving_p99_ms`: trader cards and regimes, alternating, from 32 concurrent clients each asking 4
  times a second (budget < 20 ms); `serving_saturated_rps` and its p99: the same clients sending
  back to back, which measures throughput (latency is then queueing: 32 ÷ throughput);
- `serving_score_10k_ms`: 10,000 traders' feature rows scored in one request.

The service runs on a simulated population in a scratch database of the embedded (or configured)
PostgreSQL, with models fitted on it and registered in a store of its own; the 10,000 feature
rows are benchmark input (`research.ai_bench.synthetic_trades`), so only times are reported.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import numpy as np

from serving.client import ServingClient, Unknown
from serving.process import ServiceProcess
from serving.schemas import ScoreItem

CLIENTS = 32
# Each client asks 4 times a second (128 requests/s in all): an interactive load, below the
# saturated throughput, which is reported beside it (32 clients sending back to back).
RATE_PER_CLIENT = 4
PACED_REQUESTS = 60  # 15 s of paced load per client
SATURATED_REQUESTS = 50
TRADERS, DAYS, SEED = 300, 42, 5


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fit(events, as_of: int):  # type: ignore[no-untyped-def]
    import polars as pl

    from research import forecast, regime
    from research.analyzer import fit_analyzer
    from research.pipeline import Tables
    from research.sim.prices import synthetic_paths

    tables = Tables.from_events(events)
    dates = forecast.as_of_dates(tables.trades, end=as_of)
    panel = forecast.build_panel(
        tables.trades, dates, positions=tables.positions, prices=tables.prices, n_boot=50
    )
    analyzer = fit_analyzer(panel, tables.features_at(as_of))
    candles = [
        pl.DataFrame({"ts": p.start_ts + 900 * pl.int_range(0, p.bars, eager=True), "close": p.close / 1e10})
        for p in synthetic_paths(90, seed=11).values()
    ]
    return analyzer, regime.RegimeModel.fit([regime.hourly_observations(c) for c in candles])


async def _latencies(
    url: str, traders: list[str], *, rate_per_client: float | None, requests_per_client: int
) -> tuple[list[float], float]:
    """Latencies (ms) of trader cards and regimes, alternating, from CLIENTS concurrent clients, and
    the seconds it all took. Paced clients send at `rate_per_client` per second and a late request
    is timed from when it should have been sent (no coordinated omission); unpaced ones send back
    to back (the service's saturated throughput).

    The load comes from aiohttp, not the typed client: its httpx pool spends ~3 ms of CPU per call
    at 32-way concurrency in one process (~0.3 ms for aiohttp), and 32 real clients are 32 processes;
    the benchmark measures the service, not one process pretending to be 32."""
    out: list[float] = []
    failures: list[str] = []

    async def one(http: aiohttp.ClientSession, k: int) -> None:
        interval = 1 / rate_per_client if rate_per_client else 0.0
        due = time.perf_counter() + interval * k / CLIENTS  # staggered starts
        for i in range(requests_per_client):
            if interval:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                due = time.perf_counter()
            if i % 2:
                route, body = "/regime", {"pair": "BTC/USD"}
            else:
                route, body = "/trader", {"address": traders[(k * requests_per_client + i) % len(traders)]}
            async with http.post(url + route, json=body) as reply:
                await reply.read()
                if reply.status != 200:
                    failures.append(f"{route}: HTTP {reply.status}")
            out.append((time.perf_counter() - due) * 1000)
            due += interval

    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        started = time.perf_counter()
        await asyncio.gather(*(one(http, k) for k in range(CLIENTS)))
        elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} calls failed during the benchmark: {failures[:3]}")
    return out, elapsed


@asynccontextmanager
async def bench_service(log_level: str = "WARNING") -> AsyncIterator[tuple[ServiceProcess, float]]:
    """A started service on a simulated population (scratch database, store of its own); yields it
    with its cold start in seconds, and stops it (and drops the database) afterwards."""
    from data.event_frames import events_from_frame
    from data.store import insert_events
    from infra import db, embedded
    from infra.settings import get_settings
    from research.pipeline import ANALYZER_MODEL, REGIME_MODEL
    from research.sim.run import simulate
    from serving.process import register_models

    settings = get_settings()
    server_url = embedded.database_url(settings)
    sim = simulate(TRADERS, DAYS, SEED, prices="synthetic")
    as_of = int(sim.events["ts"].max()) + 1
    analyzer, regime_model = _fit(sim.events, as_of)
    async with db.scratch_database(server_url) as url:
        pool = await db.create_pool(url, max_size=2)
        async with pool.acquire() as conn:
            await insert_events(conn, events_from_frame(sim.events))
        await pool.close()
        with tempfile.TemporaryDirectory(prefix="vanta-serving-bench-") as tmp:
            store = Path(tmp) / "bentoml"
            register_models(store, {ANALYZER_MODEL: (analyzer, {}), REGIME_MODEL: (regime_model, {})})
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "REDIS_URL": embedded.redis_url(settings),
                "VANTA_HOME": str(Path(tmp) / "home"),
                "BENTOML_HOME": str(store),
                "BENTOML_DO_NOT_TRACK": "true",
                "LOG_LEVEL": log_level,
            }
            service = ServiceProcess(_free_port(), env, Path(tmp) / "serve.log")
            try:
                service.start()
                cold_start = await service.wait_ready()
                yield service, cold_start
            finally:
                service.stop()


async def _bench() -> dict[str, float]:
    from research.ai_bench import synthetic_trades
    from research.features import trader_features

    trades = synthetic_trades(10_000, 90, 3.0, seed=11)
    rows = trader_features(trades, 90 * 86_400).drop("trader").to_dicts()
    batch = [ScoreItem(trader=f"bench{i}", features=r) for i, r in enumerate(rows)]
    async with bench_service() as (service, cold_start):
        async with ServingClient(service.url, timeout_s=60, attempts=1) as client:
            page = await client.leaderboard(eligible_only=False, page_size=200)
            assert not isinstance(page, Unknown)
            traders = [r.trader for r in page.rows]
            # Warm: every card cached.
            await _latencies(
                service.url,
                traders,
                rate_per_client=None,
                requests_per_client=2 * len(traders) // CLIENTS + 2,
            )
            latencies, _ = await _latencies(
                service.url, traders, rate_per_client=RATE_PER_CLIENT, requests_per_client=PACED_REQUESTS
            )
            saturated, seconds = await _latencies(
                service.url, traders, rate_per_client=None, requests_per_client=SATURATED_REQUESTS
            )
            score_runs = []
            for _ in range(3):
                started = time.perf_counter()
                scored = await client.score(batch)
                score_runs.append((time.perf_counter() - started) * 1000)
                assert not isinstance(scored, Unknown) and len(scored) == len(batch)
    return {
        "serving_cold_start_s": round(cold_start, 2),
        "serving_p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "serving_p50_ms": round(statistics.median(latencies), 2),
        "serving_offered_rps": CLIENTS * RATE_PER_CLIENT,
        "serving_requests": len(latencies),
        "serving_saturated_rps": round(len(saturated) / seconds, 1),
        "serving_saturated_p99_ms": round(float(np.percentile(saturated, 99)), 2),
        "serving_score_10k_ms": round(min(score_runs), 1),
        "serving_score_10k_ms_median": round(statistics.median(score_runs), 1),
    }


def run() -> dict[str, float]:
    return asyncio.run(_bench())
