"""The scheduler: jobs at their intervals, and a failed retraining raised as an alert (log line,
metric, admin notification) while nothing else changes."""

from __future__ import annotations

import asyncio
import logging
import sys

import asyncpg
import pytest

from infra.metrics import REGISTRY
from serving.scheduler import Job, JobFailed, Scheduler, run_command
from tests.waiting import until

pytestmark = pytest.mark.integration


def _runs(job: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("vanta_scheduler_runs_total", {"job": job, "outcome": outcome}) or 0.0


async def test_a_failed_retraining_alerts_the_admins_and_is_counted(
    migrated_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    await migrated_pool.execute(
        "INSERT INTO users (telegram_user_id, is_admin) VALUES (1, true), (2, false), (3, true)"
    )
    failing = [
        sys.executable,
        "-c",
        "import sys; print('notebook 02'); sys.exit('history too short: 3 days, 30 needed')",
    ]

    async def retrain() -> dict[str, object]:
        return dict(await run_command(failing, timeout_s=60))

    async def alert(exc: BaseException) -> str:
        return f"Retraining failed ({exc}). The serving models stay as they are."

    before = _runs("retrain", "failed")
    with caplog.at_level(logging.ERROR, logger="vanta.scheduler"):
        ok = await Scheduler(migrated_pool, []).run_job(Job("retrain", 86_400, retrain, alert=alert))
    assert not ok
    assert _runs("retrain", "failed") == before + 1
    assert any("scheduled job failed" in r.getMessage() for r in caplog.records)
    rows = await migrated_pool.fetch(
        "SELECT u.telegram_user_id, n.kind, n.text FROM notifications n JOIN users u ON u.id = n.user_id ORDER BY 1"
    )
    assert [(r["telegram_user_id"], r["kind"]) for r in rows] == [(1, "admin_alert"), (3, "admin_alert")]
    assert "exit 1: history too short: 3 days, 30 needed" in rows[0]["text"]


async def test_a_child_that_hangs_is_killed_with_its_group_and_a_summary_is_its_last_json_line() -> None:
    with pytest.raises(JobFailed, match="did not finish within 1 s"):
        await run_command([sys.executable, "-c", "import time; time.sleep(60)"], timeout_s=1)
    summary = await run_command(
        [sys.executable, "-c", "print('progress...'); print('{\"registered\": [\"vanta_regime\"]}')"],
        timeout_s=60,
    )
    assert summary == {"registered": ["vanta_regime"]}


async def test_jobs_run_at_start_and_at_their_interval_and_a_failing_one_stops_nothing(
    migrated_pool: asyncpg.Pool,
) -> None:
    runs: list[str] = []

    async def quick() -> dict[str, object]:
        runs.append("quick")
        return {"n": len(runs)}

    async def broken() -> dict[str, object]:
        runs.append("broken")
        raise JobFailed("no prices")

    stop = asyncio.Event()
    scheduler = Scheduler(migrated_pool, [Job("quick", 0.05, quick), Job("broken", 3600, broken)])
    task = asyncio.create_task(scheduler.run(stop))
    await until(lambda: runs.count("quick") >= 3, what="three runs of the quick job")
    stop.set()
    await asyncio.wait_for(task, 30)
    assert runs.count("broken") == 1  # ran at start, next run an hour away
