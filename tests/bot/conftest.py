"""The AI service the bot's end-to-end tests talk to: the real BentoML service (`vanta serve`) on
the serving tests' small simulated snapshot with models fitted on it, started once per session
(the serving tests start theirs per module: some of them kill or reload it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from serving.process import ServiceProcess
from tests.servers import free_port
from tests.serving.conftest import Snapshot, service_env, simulated_snapshot, train_and_register


@dataclass
class Served:
    snapshot: Snapshot
    url: str  # the service's base URL (what SERVING_URL would say)


@pytest.fixture(scope="session")
async def served(
    pg_server_url: str, redis_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    async with simulated_snapshot(pg_server_url, "bot_served") as snapshot:
        store = await asyncio.to_thread(train_and_register, snapshot, tmp_path_factory.mktemp("bot_bentoml"))
        serve_home = tmp_path_factory.mktemp("bot_serving_home")
        process = ServiceProcess(
            free_port(), service_env(snapshot, store, redis_server_url, serve_home), serve_home / "serve.log"
        )
        try:
            process.start()
            await process.wait_ready()
            yield Served(snapshot, process.url)
        finally:
            process.stop()
