"""`vanta scheduler`: the serving layer's periodic work, each job in its own loop.

- `retrain`, every 24 hours: the papermill research run in a child process (its own process group,
  killed with it). Only models that beat their baselines are registered, so a failed run changes
  nothing in the model store and the service keeps serving what it serves; the failure raises an
  alert: an error log line, `vanta_scheduler_runs_total{job="retrain",outcome="failed"}`, and an
  admin notification in the outbox.
- `refresh`, every `AI_MODEL_UPDATE_INTERVAL`: the current regime per pair into
  `market_regime_data` and per-trader analytics into `trader_analytics`.
- Pyth prices, when feeds are configured: the Hermes stream recorded into `market_prices`.

A job that fails is logged and counted and runs again at its next time; it never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import asyncpg

from infra.logs import log_fields
from infra.metrics import counter, gauge, histogram
from serving.alerts import alert_admins

log = logging.getLogger("vanta.scheduler")

RUNS = counter("vanta_scheduler_runs_total", "Scheduled job runs by outcome", ("job", "outcome"))
LAST_SUCCESS = gauge(
    "vanta_scheduler_last_success_timestamp_seconds", "When each job last succeeded (unix time)", ("job",)
)
DURATION = histogram(
    "vanta_scheduler_job_seconds",
    "Duration of scheduled job runs",
    ("job",),
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600),
)

Summary = Mapping[str, object]


class JobFailed(RuntimeError):
    """A job could not do its work; the message says why in one line."""


@dataclass
class Job:
    name: str
    every_s: float
    run: Callable[[], Awaitable[Summary]]
    # Writes an admin notification when a run fails (for jobs whose failure someone must look at).
    alert: Callable[[BaseException], Awaitable[str]] | None = None
    first_after_s: float = 0.0  # delay before the first run (a day-long retraining need not start at boot)


class Scheduler:
    def __init__(self, pool: asyncpg.Pool, jobs: list[Job]):
        self.pool = pool
        self.jobs = jobs

    async def run_job(self, job: Job) -> bool:
        started = time.monotonic()
        try:
            summary = await job.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            RUNS.labels(job.name, "failed").inc()
            log.error(
                "scheduled job failed",
                extra=log_fields(job=job.name, error=f"{type(exc).__name__}: {exc}"),
                exc_info=not isinstance(exc, JobFailed),
            )
            if job.alert is not None:
                await self._alert(job, exc)
            return False
        finally:
            DURATION.labels(job.name).observe(time.monotonic() - started)
        RUNS.labels(job.name, "ok").inc()
        LAST_SUCCESS.labels(job.name).set(time.time())
        log.info("scheduled job done", extra=log_fields(job=job.name, **dict(summary)))
        return True

    async def _alert(self, job: Job, exc: BaseException) -> None:
        assert job.alert is not None
        try:
            text = await job.alert(exc)
            async with self.pool.acquire() as conn:
                await alert_admins(
                    conn,
                    dedupe_key=f"job_failed:{job.name}:{int(time.time())}",
                    text=text,
                    payload={"job": job.name, "error": str(exc)[:500]},
                )
        except Exception:  # the alert is best effort; the failure itself is already logged and counted
            log.exception("could not queue the admin alert", extra=log_fields(job=job.name))

    async def _loop(self, job: Job, stop: asyncio.Event) -> None:
        if job.first_after_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), job.first_after_s)
        while not stop.is_set():
            await self.run_job(job)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), job.every_s)

    async def run(self, stop: asyncio.Event, *, background: list[Awaitable[object]] = ()) -> None:
        """Every job now and then at its interval, plus long-running `background` tasks, until `stop`."""
        tasks = [asyncio.create_task(self._loop(job, stop), name=job.name) for job in self.jobs]
        for b in background:
            task = asyncio.ensure_future(b)
            task.add_done_callback(_report_background)
            tasks.append(task)
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # failures were reported as they ended


def _report_background(task: asyncio.Future[object]) -> None:
    """A background task (the price recorder) that ended on an error: say so when it happens."""
    if not task.cancelled() and task.exception() is not None:
        RUNS.labels("background", "failed").inc()
        log.error("background task stopped", extra=log_fields(error=repr(task.exception())))


async def run_command(cmd: list[str], *, timeout_s: float, env: dict[str, str] | None = None) -> Summary:
    """Run a child command in its own process group; its last JSON line on stdout is the summary.

    A non-zero exit or a timeout is `JobFailed` naming the cause (the child's last stderr line);
    cancelling the caller kills the whole group, so no notebook kernel outlives the scheduler.
    """
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except (TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if isinstance(exc, TimeoutError):
            raise JobFailed(f"{cmd[-1]!r} did not finish within {timeout_s:.0f} s") from None
        raise
    if proc.returncode != 0:
        lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
        raise JobFailed(f"exit {proc.returncode}: {_reason(lines[-1]) if lines else 'no error output'}")
    for line in reversed(out.decode(errors="replace").splitlines()):
        with contextlib.suppress(json.JSONDecodeError):
            parsed = json.loads(line)
            if isinstance(parsed, dict):
                return parsed
    return {}


def _reason(line: str) -> str:
    """A child's error line, reduced to its message when it is one of our JSON log lines."""
    with contextlib.suppress(json.JSONDecodeError, TypeError, AttributeError):
        entry = json.loads(line)
        return str(entry.get("error") or entry.get("msg") or line)[:300]
    return line[:300]
