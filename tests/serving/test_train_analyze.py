"""`vanta train`, `vanta analyze`, `vanta regime` against a real PostgreSQL: exact output shapes,
registration only for a model that beats its baselines, a clear answer when history is short."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from data.event_frames import events_from_frame
from data.store import insert_events
from research import forecast
from tests.conftest import shared_data_or_skip
from tests.research.analyzer_fixtures import small_population

pytestmark = pytest.mark.integration
VANTA = str(Path(sys.executable).parent / "vanta")
ANALYZE_KEYS = [
    "trader",
    "rank",
    "score",
    "p_win_7d",
    "expected_pnl_7d_usdc",
    "anomaly",
    "anomaly_score",
    "flags",
    "archetype",
    "psr",
    "dsr",
    "trades",
]
REGIME_KEYS = ["pair", "color", "volatility_1h", "trend", "confidence", "as_of", "model"]


def vanta(args: list[str], db_url: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "VANTA_HOME": str(home),
        "BENTOML_HOME": str(home / "bentoml"),
    }
    return subprocess.run(
        [VANTA, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


async def test_real_history_is_too_short_to_train_yet_analyze_answers_from_skill_stats(
    empty_db_url: str, tmp_path: Path
) -> None:
    files = sorted(shared_data_or_skip("avantis", "trades").glob("*.json"))
    assert vanta(["ingest", "history", *map(str, files)], empty_db_url, tmp_path).returncode == 0
    out = vanta(["train"], empty_db_url, tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["analyzer"]["status"] == "history_too_short"
    assert (
        "need 200" in summary["analyzer"]["reason"]
        and "days of closed trades" in summary["analyzer"]["reason"]
    )
    assert summary["analyzer"]["registered"] is None

    out = vanta(["analyze", "--json", "--as-of", "2026-07-01T00:00:00Z"], empty_db_url, tmp_path)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 3 and all(list(r) == ANALYZE_KEYS for r in rows)
    assert "skill statistics alone" in out.stderr
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert all(r["p_win_7d"] is None and abs(r["score"] - 100 * r["psr"]) < 1e-3 for r in rows)
    bad = vanta(["analyze", "--as-of", "last tuesday"], empty_db_url, tmp_path)
    assert bad.returncode == 2 and "--as-of" in bad.stderr and "Traceback" not in bad.stderr


@pytest.fixture
async def simulated_db(empty_db_url: str) -> str:
    events, _ = small_population()
    conn = await asyncpg.connect(empty_db_url)
    try:
        from infra import db

        await db.migrate(conn)
        await insert_events(conn, events_from_frame(events))
    finally:
        await conn.close()
    return empty_db_url


async def test_a_losing_model_is_not_registered_and_a_winner_is(
    simulated_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra import db
    from infra.settings import load_settings
    from serving import registry
    from serving.training import train_models

    os.environ.pop("BENTOML_HOME", None)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    settings = load_settings(vanta_home=tmp_path)
    pool = await db.create_pool(simulated_db, max_size=2)
    verdicts = iter([(False, "loses to psr (forced)"), (True, "beats (forced)")])
    monkeypatch.setattr(forecast, "beats_baselines", lambda table: next(verdicts))
    try:
        lost = await train_models(pool, settings, None)
        assert lost["analyzer"]["status"] == "not_registered" and lost["analyzer"]["registered"] is None
        assert registry.load_latest("vanta_analyzer") is None
        won = await train_models(pool, settings, None)
        tag = won["analyzer"]["registered"]
        assert won["analyzer"]["status"] == "registered" and tag.startswith("vanta_analyzer:")
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT beats_baseline, is_active, bento_tag, metrics FROM ai_model_metadata "
                "WHERE name = 'vanta_analyzer' ORDER BY id"
            )
        assert [(r["beats_baseline"], r["is_active"]) for r in rows] == [(False, False), (True, True)]
        assert rows[1]["bento_tag"] == tag and "copy_auc" in json.loads(rows[1]["metrics"])
    finally:
        await pool.close()
    loaded = registry.load_latest("vanta_analyzer")
    assert loaded is not None and loaded.tag == tag
    assert loaded.metadata["features"] and loaded.metadata["kind"] == "analyzer"

    out = vanta(["analyze", "--json", "--limit", "0"], simulated_db, tmp_path)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    events, _ = small_population()
    assert len(rows) == events["trader"].n_unique() and all(list(r) == ANALYZE_KEYS for r in rows)
    assert tag in out.stderr and all(0 <= r["p_win_7d"] <= 1 for r in rows)
    flagged = [bool(r["flags"]) for r in rows]
    assert flagged == sorted(flagged)  # unflagged first

    if shared_data_or_skip("prices"):
        assert won["regime"]["status"] in ("registered", "not_registered")
        out = vanta(
            ["regime", "--json", "--pair", "BTC/USD", "--as-of", "2026-01-15T10:20:00Z"],
            simulated_db,
            tmp_path,
        )
        if won["regime"]["registered"]:
            assert out.returncode == 0, out.stderr
            row = json.loads(out.stdout)
            assert list(row) == REGIME_KEYS and row["pair"] == "BTC/USD"
            assert row["color"] in ("green", "yellow", "red") and row["as_of"] == "2026-01-15T10:00:00Z"
            assert row["trend"] in ("bullish", "bearish", "neutral") and 0 <= row["confidence"] <= 1
        else:
            assert out.returncode == 1 and "no regime model registered" in out.stderr
