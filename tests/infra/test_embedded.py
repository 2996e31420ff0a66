"""Embedded PostgreSQL and Redis shared by real `vanta` processes of one VANTA_HOME.

A long-running `vanta track` keeps working while other commands start and exit beside it (one
of them a second tracker stopped by SIGTERM); a last user killed by SIGKILL has its servers
stopped by the watchdog, and the next command starts them again. Every process a test starts
is in its own process group and killed at the end, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from infra import embedded
from infra.bus import StreamBus, connect

pytestmark = pytest.mark.integration
VANTA = str(Path(sys.executable).parent / "vanta")
TRADER = "0x" + "ab" * 20


def env_for(home: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {**base, "VANTA_HOME": str(home), "METRICS_PORT": "0"}


@contextlib.contextmanager
def started(args: list[str], home: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [VANTA, *args], env=env_for(home), stdout=sink, stderr=sink, start_new_session=True
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VANTA, *args], env=env_for(home), capture_output=True, text=True, timeout=120, start_new_session=True
    )


def wait_for(condition, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def users(home: Path) -> dict[str, list[int]]:
    return {name: s["users"] for name, s in embedded.status(home).items()}  # type: ignore[misc]


def server_pids(home: Path) -> dict[str, int | None]:
    return {name: s["pid"] for name, s in embedded.status(home).items()}  # type: ignore[misc]


def watchdog_running(home: Path) -> bool:
    import fcntl

    with (home / "run" / "watchdog.lock").open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def open_event(n: int) -> dict[str, object]:
    return {
        "event_id": f"test:open:{n}",
        "venue": "avantis",
        "source": "test",
        "trader": TRADER,
        "pair_index": 1,
        "kind": "open",
        "trade_index": n,
        "open_ts": 1_700_000_000 + n,
        "ts": 1_700_000_000 + n,
        "side": "long",
        "collateral_usdc": 100_000_000,
        "leverage": "10",
        "price": "60000",
    }


async def tracked_positions(home: Path) -> int:
    conn = await asyncpg.connect(embedded.status(home)["postgres"]["url"])
    try:
        if not await conn.fetchval("SELECT to_regclass('public.trader_positions') IS NOT NULL"):
            return -1  # the tracker has not migrated yet
        return await conn.fetchval("SELECT count(*) FROM trader_positions WHERE trader = $1", TRADER)
    finally:
        await conn.close()


async def test_other_commands_exiting_beside_a_service_leave_its_servers_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    log = tmp_path / "vanta.log"
    with started(["track"], home, log) as tracker:
        wait_for(
            lambda: (home / "run").exists() and all(tracker.pid in u for u in users(home).values()), "track"
        )
        before = server_pids(home)
        url = embedded.status(home)["redis"]["url"]
        assert isinstance(url, str)
        bus = StreamBus(connect(url))
        await bus.publish(open_event(0))
        await asyncio.to_thread(wait_for, lambda: asyncio.run(tracked_positions(home)) == 1, "first event")

        # Commands that use Redis, PostgreSQL or both start and exit beside the tracker...
        assert run(["kill-switch", "on"], home).returncode == 0
        assert run(["db", "status", "--json"], home).returncode == 0
        assert run(["kill-switch", "off"], home).returncode == 0
        # ...and a second service is stopped by SIGTERM.
        with started(["track"], home, log) as second:
            wait_for(lambda: all(second.pid in u for u in users(home).values()), "second tracker")
            second.send_signal(signal.SIGTERM)
            assert second.wait(10) == 0
        assert server_pids(home) == before, "a server was restarted or stopped under the tracker"
        shown = json.loads(run(["services", "status", "--json"], home).stdout)
        assert {n: (v["pid"], v["users"]) for n, v in shown.items()} == {
            n: (before[n], [tracker.pid]) for n in ("postgres", "redis")
        }
        assert {n: u for n, u in users(home).items()} == {"postgres": [tracker.pid], "redis": [tracker.pid]}

        await bus.publish(open_event(1))
        await asyncio.to_thread(wait_for, lambda: asyncio.run(tracked_positions(home)) == 2, "second event")
        assert tracker.poll() is None, log.read_text()[-3000:]
        await bus.redis.aclose()
        tracker.send_signal(signal.SIGTERM)
        assert tracker.wait(10) == 0
    # The last user left normally: it stopped both servers itself.
    assert server_pids(home) == {"postgres": None, "redis": None}
    wait_for(lambda: not watchdog_running(home), "the watchdog to exit")


def test_a_sigkilled_last_user_has_its_servers_stopped_and_the_next_start_is_clean(tmp_path: Path) -> None:
    home = tmp_path / "home"
    log = tmp_path / "vanta.log"
    with started(["track"], home, log) as tracker:
        wait_for(
            lambda: (home / "run").exists() and all(tracker.pid in u for u in users(home).values()), "track"
        )
        pids = server_pids(home)
        assert all(pids.values())
        os.killpg(tracker.pid, signal.SIGKILL)  # no atexit, no lease released
        tracker.wait(10)
    killed = time.monotonic()
    wait_for(
        lambda: server_pids(home) == {"postgres": None, "redis": None}, "the watchdog to stop the servers"
    )
    stopped_after = time.monotonic() - killed
    assert all(not embedded._alive(p) for p in pids.values() if p)
    assert users(home) == {"postgres": [], "redis": []}
    wait_for(lambda: not watchdog_running(home), "the watchdog to exit")
    print(f"servers stopped {stopped_after:.1f} s after their last user was SIGKILLed")

    # A user SIGKILLed while the next one starts: the next one reuses or restarts the servers,
    # its dead neighbour's lease is swept, and when it exits nothing is left.
    with started(["track"], home, log) as doomed:
        wait_for(lambda: all(doomed.pid in u for u in users(home).values()), "track")
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
    migrate = run(["db", "migrate"], home)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    status = run(["db", "status", "--json"], home)
    assert status.returncode == 0, status.stderr[-2000:]
    assert json.loads(status.stdout)["migrations_applied"] == json.loads(status.stdout)["migrations_known"]
    wait_for(lambda: server_pids(home) == {"postgres": None, "redis": None}, "everything to stop")
    assert users(home) == {"postgres": [], "redis": []}
    wait_for(lambda: not watchdog_running(home), "the watchdog to exit")
    leftovers = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], f"processes still running for {home}: {leftovers}"


def test_servers_whose_home_is_deleted_are_stopped(tmp_path: Path) -> None:
    """A test run's temporary root is deleted when it passes; its servers must not outlive it.
    Seen: one orphaned redis-server per passing pytest session (the watchdog found its home gone
    and returned without stopping what it had been watching)."""
    home = tmp_path / "home"
    with started(["track"], home, tmp_path / "vanta.log") as tracker:
        wait_for(
            lambda: (home / "run").exists() and all(tracker.pid in u for u in users(home).values()), "track"
        )
        pids = server_pids(home)
        assert all(pids.values())
        wait_for(lambda: watchdog_running(home), "the watchdog")
        shutil.rmtree(home, ignore_errors=True)
        wait_for(
            lambda: not any(embedded._alive(p) for p in pids.values() if p),
            "the servers of a deleted home to stop",
        )
