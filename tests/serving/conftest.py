"""A small simulated snapshot in PostgreSQL with models trained on it, and the real BentoML service
serving them from a store of its own (started once per module: its cold start is seconds)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import polars as pl
import pytest

from data.event_frames import events_from_frame
from data.store import insert_events
from infra import db
from infra.db import with_database
from research import forecast, regime
from research.analyzer import Analyzer, fit_analyzer
from research.pipeline import ANALYZER_MODEL, REGIME_MODEL, Tables
from research.sim.prices import synthetic_paths
from research.sim.run import simulate
from research.stats import Eligibility
from serving.client import ServingClient, Unknown
from serving.process import ServiceProcess, register_models
from tests.servers import free_port
from tests.waiting import until

SIM_TRADERS, SIM_DAYS, SIM_SEED = 160, 42, 5  # seed 5: the last hour is green (the engine test copies)
# Lenient enough that part of a small population is eligible, strict enough that not all is.
ELIGIBILITY = Eligibility(active_hours=72, min_trades=40, min_volume_usd=0)


@dataclass
class Snapshot:
    db_url: str
    events: pl.DataFrame  # the simulator's event frame, as stored
    as_of: int  # one second after the latest event: the service's (and `vanta analyze`'s) as-of
    stats_as_of: int  # the tracker's stats as-of (the latest event)


@dataclass
class Store:
    home: Path
    analyzer: Analyzer
    regime: regime.RegimeModel
    tags: dict[str, str]


def fit_models(events: pl.DataFrame, as_of: int, seed: int = 0) -> tuple[Analyzer, regime.RegimeModel]:
    """The registered shapes, fitted directly (the walk-forward verdict is `vanta train`'s job)."""
    tables = Tables.from_events(events)
    panel = forecast.build_panel(
        tables.trades,
        forecast.as_of_dates(tables.trades, end=as_of),
        positions=tables.positions,
        prices=tables.prices,
        n_boot=50,
    )
    analyzer = fit_analyzer(panel, tables.features_at(as_of), seed=seed)
    # The regime model on 90 days of a synthetic market of its own (it needs 60 days of hours).
    candles = [
        pl.DataFrame({"ts": p.start_ts + 900 * pl.int_range(0, p.bars, eager=True), "close": p.close / 1e10})
        for p in synthetic_paths(90, seed=11).values()
    ]
    return analyzer, regime.RegimeModel.fit([regime.hourly_observations(c) for c in candles], seed=seed)


@asynccontextmanager
async def simulated_snapshot(pg_server_url: str, prefix: str) -> AsyncIterator[Snapshot]:
    """A database of its own holding the simulated population and the tracker's stats on it,
    dropped on the way out."""
    from execution.tracker import full_recompute

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(pg_server_url, name)
    sim = simulate(SIM_TRADERS, SIM_DAYS, SIM_SEED, prices="synthetic", workers=1)
    pool = await db.create_pool(url, max_size=4)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
            await insert_events(conn, events_from_frame(sim.events))
        last = int(sim.events["ts"].max())
        await full_recompute(pool, as_of=last, window_days=30, eligibility=ELIGIBILITY)
        yield Snapshot(url, sim.events, last + 1, last)
    finally:
        await pool.close()
        admin = await asyncpg.connect(pg_server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(scope="module")
async def snapshot(pg_server_url: str) -> AsyncIterator[Snapshot]:
    async with simulated_snapshot(pg_server_url, "serving") as snap:
        yield snap


def train_and_register(snapshot: Snapshot, home: Path) -> Store:
    analyzer, regime_model = fit_models(snapshot.events, snapshot.as_of)
    tags = register_models(
        home,
        {
            ANALYZER_MODEL: (analyzer, {"kind": "analyzer", "as_of": snapshot.as_of}),
            REGIME_MODEL: (regime_model, {"kind": "regime"}),
        },
    )
    return Store(home, analyzer, regime_model, tags)


def service_env(snapshot: Snapshot, store: Store, redis_url: str, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": snapshot.db_url,
        "REDIS_URL": redis_url,
        "VANTA_HOME": str(home),
        "BENTOML_HOME": str(store.home),
        "BENTOML_DO_NOT_TRACK": "true",
        "SERVING_CACHE_TTL_S": "2",
        "LOG_LEVEL": "INFO",
    }


@dataclass
class Served:
    process: ServiceProcess
    store: Store


@pytest.fixture(scope="module")
async def served(
    snapshot: Snapshot, redis_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    """The real server on a free port. It starts on an empty model store while the models are fitted
    and registered beside it (its cold start overlaps the training) and picks them up from the
    store; its whole process tree is stopped at the end, even when a test fails."""
    home, store_home = tmp_path_factory.mktemp("serving_home"), tmp_path_factory.mktemp("bentoml")
    empty = Store(store_home, None, None, {})  # type: ignore[arg-type]
    process = ServiceProcess(
        free_port(), service_env(snapshot, empty, redis_server_url, home), home / "serve.log"
    )
    try:
        process.start()
        store = await asyncio.to_thread(train_and_register, snapshot, store_home)
        await process.wait_ready()
        async with ServingClient(process.url, timeout_s=30) as client:

            async def serving_both() -> bool:
                health = await client.health()
                return not isinstance(health, Unknown) and health.models == store.tags

            await until(serving_both, what="the registered models to be served", timeout_s=120)
        yield Served(process, store)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def service(served: Served) -> ServiceProcess:
    return served.process


@pytest.fixture(scope="module")
def store(served: Served) -> Store:
    return served.store
