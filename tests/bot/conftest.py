"""The AI service the bot's end-to-end tests talk to: the real BentoML service (`vanta serve`) on
the serving tests' small simulated snapshot with models fitted on it, started once per session.

Built from the serving tests' helpers (`tests.serving.conftest`), so both test the same thing; if
those fixtures become session-scoped and shared, this one can simply be replaced by them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from data.event_frames import events_from_frame
from data.store import insert_events
from infra import db
from infra.db import with_database
from research.pipeline import ANALYZER_MODEL, REGIME_MODEL
from research.sim.run import simulate
from serving.process import ServiceProcess, register_models
from tests.servers import free_port
from tests.serving.conftest import (
    ELIGIBILITY,
    SIM_DAYS,
    SIM_SEED,
    SIM_TRADERS,
    Snapshot,
    Store,
    fit_models,
    service_env,
)


@dataclass
class Served:
    snapshot: Snapshot
    url: str  # the service's base URL (what SERVING_URL would say)


@pytest.fixture(scope="session")
async def served(
    pg_server_url: str, redis_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    from execution.tracker import full_recompute

    name = f"bot_served_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_server_url, name)
    process: ServiceProcess | None = None
    sim = simulate(SIM_TRADERS, SIM_DAYS, SIM_SEED, prices="synthetic", workers=1)
    pool = await db.create_pool(url, max_size=4)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
            await insert_events(conn, events_from_frame(sim.events))
        last = int(sim.events["ts"].max())
        await full_recompute(pool, as_of=last, window_days=30, eligibility=ELIGIBILITY)
        snapshot = Snapshot(url, sim.events, last + 1, last)
        home = tmp_path_factory.mktemp("bot_bentoml")
        analyzer, regime_model = fit_models(sim.events, snapshot.as_of)
        tags = register_models(
            home,
            {
                ANALYZER_MODEL: (analyzer, {"kind": "analyzer", "as_of": snapshot.as_of}),
                REGIME_MODEL: (regime_model, {"kind": "regime"}),
            },
        )
        store = Store(home, analyzer, regime_model, tags)
        serve_home = tmp_path_factory.mktemp("bot_serving_home")
        process = ServiceProcess(
            free_port(), service_env(snapshot, store, redis_server_url, serve_home), serve_home / "serve.log"
        )
        process.start()
        await process.wait_ready()
        yield Served(snapshot, process.url)
    finally:
        if process is not None:
            process.stop()
        await pool.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
