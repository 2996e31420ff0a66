"""PostgreSQL access: the asyncpg pool and the numbered-migration runner.

Migrations are plain SQL files `NNNN_name.sql` beside this module. Each runs in its own
transaction and is recorded with its checksum, so a rerun is a no-op and an edited, already
applied migration is refused instead of silently diverging from production.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from infra.errors import Unreachable
from infra.logs import mask_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every process that migrates.
_MIGRATION_LOCK_ID = 0x56414E5441


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name must look like 0001_name.sql: {path.name}")
        migrations.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"migrations must be numbered 1..N without gaps, found {versions}")
    return migrations


def with_database(url: str, name: str) -> str:
    """The same server's URL with another database name (query options such as a socket dir kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@asynccontextmanager
async def scratch_database(server_url: str) -> AsyncIterator[str]:
    """A migrated, throw-away database on the same server (benchmarks), dropped afterwards."""
    name = f"scratch_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = with_database(server_url, name)
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool on `url`; a server that cannot be reached is an `Unreachable` naming it (masked)
    and the cause in one line, not a driver traceback.

    After a server restart the pool replaces each closed connection on its next acquire, so a
    unit of work retried with `infra.reconnect.with_reconnect` carries on once the server is back.
    """
    # asyncpg prepares every statement; after five runs PostgreSQL may switch to a generic plan,
    # which for `id = ANY($1)` cannot see the array and picks a sequential scan: the copy fan-out
    # then slowed by 20 ms per 1,000 journal rows. Custom plans see the array and use the keys.
    # Sessions run in UTC whatever the server's default: a date or timestamp that SQL derives
    # (`::date`, `date_trunc`, displayed times) means the same day in every process.
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            command_timeout=60,
            timeout=10,  # to connect: an unreachable server is reported, not waited on forever
            server_settings={"plan_cache_mode": "force_custom_plan", "TimeZone": "UTC"},
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise Unreachable(f"cannot reach PostgreSQL at {describe_server(url)}: {_cause(exc)}") from exc
    assert pool is not None
    return pool


def describe_server(url: str) -> str:
    """The server a PostgreSQL URL names, without credentials, database or options."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:  # a Unix socket: the directory is in the query (`?host=/path`)
        sockets = [
            v for k, v in (kv.split("=", 1) for kv in parts.query.split("&") if "=" in kv) if k == "host"
        ]
        return f"unix socket {sockets[0]}" if sockets else "the local Unix socket"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {mask_url(text)}" if text else type(exc).__name__


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply the migrations not yet applied; return the versions applied now."""
    migrations = load_migrations(directory)
    # A session-level advisory lock serializes concurrent migrators (two services starting at once).
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        done_now = []
        for m in migrations:
            if m.version in applied:
                if applied[m.version] != m.checksum:
                    raise MigrationError(
                        f"migration {m.version:04d}_{m.name} was edited after it was applied; "
                        "add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            done_now.append(m.version)
        return done_now
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)


async def status(conn: asyncpg.Connection) -> dict[str, object]:
    has_table = await conn.fetchval("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
    applied = await conn.fetchval("SELECT count(*) FROM schema_migrations") if has_table else 0
    tables = [
        r["table_name"]
        for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
    ]
    views = [
        r["table_name"]
        for r in await conn.fetch(
            "SELECT table_name FROM information_schema.views WHERE table_schema = 'public' ORDER BY table_name"
        )
    ]
    return {
        "migrations_applied": applied,
        "migrations_known": len(load_migrations()),
        "tables": tables,
        "views": views,
    }
