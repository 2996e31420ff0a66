"""Shared fixtures: real embedded PostgreSQL and Redis, started once per test session.

Each test that needs a database gets a fresh, empty one (CREATE DATABASE), so tests never see
each other's rows. DATABASE_URL / REDIS_URL in the environment point the suite at external servers.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from infra import embedded
from infra.db import with_database
from infra.settings import SHARED_DATA_DEFAULT

# The real data, where the settings look for it (SHARED_DATA_DIR, else ../shared/data).
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR") or SHARED_DATA_DEFAULT)


def shared_data_or_skip(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not present at {path} (set SHARED_DATA_DIR, or ../shared beside the project)")
    return path


@pytest.fixture(scope="session")
def vanta_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vanta_home")


# Released when the session's fixtures end, not at interpreter exit: pytest deletes a passing
# session's temporary root before exit, and a server whose home is gone could not be stopped.
@pytest.fixture(scope="session")
def pg_server_url(vanta_home: Path) -> Iterator[str]:
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    try:
        yield embedded.embedded_postgres_url(vanta_home)
    finally:
        embedded.release(vanta_home, "postgres")


@pytest.fixture(scope="session")
def redis_server_url(vanta_home: Path) -> Iterator[str]:
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    try:
        yield embedded.embedded_redis_url(vanta_home)
    finally:
        embedded.release(vanta_home, "redis")


@pytest.fixture
async def empty_db_url(pg_server_url: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(pg_server_url, name)
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def migrated_pool(empty_db_url: str) -> AsyncIterator[asyncpg.Pool]:
    from infra import db

    pool = await db.create_pool(empty_db_url)
    async with pool.acquire() as conn:
        await db.migrate(conn)
    yield pool
    await pool.close()


@pytest.fixture
def stream_name() -> Iterator[str]:
    yield f"test:{secrets.token_hex(6)}"
