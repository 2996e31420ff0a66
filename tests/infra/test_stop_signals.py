"""Long-running commands stop within 5 s of SIGTERM or SIGINT, even in the middle of a retry.

Each command is brought into a retry loop first (its server gone, or never there) and the test
waits on that progress, not on the clock; then the signal is sent and the exit timed. Every
process runs in its own process group, killed at the end whatever happened.
(`vanta index tail|backfill` are tested in tests/data/test_indexer.py, the tracker's restarts in
tests/execution/test_tracker_restarts.py.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import RestartableRedis, free_port

pytestmark = pytest.mark.integration
VANTA = str(Path(sys.executable).parent / "vanta")


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {**env, "VANTA_HOME": str(tmp_path / "home"), "METRICS_PORT": "0", **extra}


def tracker_group_exists(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return any(g["name"] == b"tracker" for g in client.xinfo_groups("events"))
    except redis.ResponseError:
        return False  # no stream yet
    finally:
        client.close()


def stop_and_time(proc: subprocess.Popen[bytes], log: Path, ready: str, sig: signal.Signals) -> float:
    try:
        deadline = time.monotonic() + 90
        while ready not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"never reached {ready!r}: {log.read_text()[-3000:]}"
            time.sleep(0.05)
        sent = time.monotonic()
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        return time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_track_stops_mid_retry_after_redis_died(
    tmp_path: Path, empty_db_url: str, sig: signal.Signals
) -> None:
    with RestartableRedis(tmp_path) as rds:
        log = tmp_path / "track.log"
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                [VANTA, "track"],
                env=base_env(tmp_path, DATABASE_URL=empty_db_url, REDIS_URL=rds.url),
                stdout=sink,
                stderr=sink,
                start_new_session=True,
            )
        # Up (it reads the stream), then Redis dies: it is now waiting to reconnect.
        deadline = time.monotonic() + 60
        while not tracker_group_exists(rds.url):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        rds.kill()
        took = stop_and_time(proc, log, "server unreachable; retrying with backoff", sig)
    print(f"track: exited {took:.2f} s after {sig.name} mid-retry")
    assert took < 5 and proc.returncode == 0


def test_ingest_stream_stops_mid_retry(tmp_path: Path, empty_db_url: str, redis_server_url: str) -> None:
    dead = f"ws://127.0.0.1:{free_port()}"  # nothing listens: the order stream reconnects in a loop
    log = tmp_path / "stream.log"
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [VANTA, "ingest", "stream", "0x" + "ab" * 20, "--app-key", "k", "--ws-base", dead],
            env=base_env(tmp_path, DATABASE_URL=empty_db_url, REDIS_URL=redis_server_url),
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )
    took = stop_and_time(proc, log, "retry_in_s", signal.SIGTERM)
    print(f"ingest stream: exited {took:.2f} s after SIGTERM mid-retry")
    assert took < 5 and proc.returncode == 0
