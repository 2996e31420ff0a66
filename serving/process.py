"""The service as a child process (the demo, the benchmarks, the acceptance tests): `vanta serve` in
a process group of its own, ready when BentoML's /readyz says so, stopped with its whole group.

Also: registering models into a given BentoML store from a child process. BentoML reads
BENTOML_HOME once, when it is first imported; a child with its own environment writes to exactly
the store the service under test reads, whatever this process imported before.
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
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import joblib
import psutil


def vanta_command(*args: str) -> list[str]:
    """The `vanta` console script of this interpreter's environment (not whatever is on PATH)."""
    beside = Path(sys.executable).with_name("vanta")
    found = str(beside) if beside.exists() else shutil.which("vanta")
    if found is None:
        raise FileNotFoundError("the vanta command is not installed beside this Python")
    return [found, *args]


class ServiceFailed(RuntimeError):
    """The service exited or never became ready; the message ends with its last log lines."""


class ServiceProcess:
    def __init__(self, port: int, env: dict[str, str], log_path: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            vanta_command("serve", "--port", str(self.port), "--host", "127.0.0.1"),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: BentoML's workers die with it
        )
        log.close()

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def wait_ready(self, timeout_s: float = 300.0) -> float:
        """Seconds from start to a 200 on /readyz (BentoML asks the service's `__is_ready__`)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                if self.proc.poll() is not None:
                    raise ServiceFailed(f"vanta serve exited with {self.proc.returncode}:\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/readyz")).status_code == 200:
                        return time.perf_counter() - self.started_at
                if time.monotonic() > deadline:
                    raise ServiceFailed(f"not ready after {timeout_s:.0f} s:\n{self.tail()}")
                await asyncio.sleep(0.1)

    def _descendants(self) -> list[psutil.Process]:
        """BentoML's workers: circus starts each in a session of its own, so they are not in our
        process group and would outlive a killed parent; they are found (and killed) by ancestry."""
        assert self.proc is not None
        with contextlib.suppress(psutil.NoSuchProcess):
            return psutil.Process(self.proc.pid).children(recursive=True)
        return []

    def kill(self) -> None:
        """SIGKILL the server and every worker at once: a crash, as the acceptance tests need one."""
        if self.proc is None or self.proc.poll() is not None:
            return
        workers = self._descendants()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        _kill_all(workers)
        self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM the server (it stops its workers), then SIGKILL whatever is left after 15 s."""
        if self.proc is None:
            return
        workers = self._descendants()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        _kill_all(workers)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(15)


def _kill_all(processes: list[psutil.Process]) -> None:
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(processes, timeout=15)


_REGISTER = """
import json, sys
import joblib
from serving import registry
models = joblib.load(sys.argv[1])
print(json.dumps({name: registry.save(name, obj, meta) for name, (obj, meta) in models.items()}))
"""


def register_models(bentoml_home: Path, models: dict[str, tuple[Any, dict[str, Any]]]) -> dict[str, str]:
    """Save each (object, metadata) as a new version of its name in the store at `bentoml_home`."""
    with tempfile.TemporaryDirectory() as tmp:
        blob = Path(tmp) / "models.joblib"
        joblib.dump(models, blob)
        env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
        done = subprocess.run(
            [sys.executable, "-c", _REGISTER, str(blob)], env=env, capture_output=True, text=True, timeout=300
        )
    if done.returncode != 0:
        raise RuntimeError(f"registering {sorted(models)} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
