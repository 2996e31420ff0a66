"""The copy commands as a user types them: each malformed input gets one line naming it, exit
status 2, no traceback, and nothing written; `copies` and `reconcile` speak to people without
`--json`. The commands run in process (typer's runner) against a real PostgreSQL; one runs as a
real `vanta` process to show what the shell sees."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
import typer
from typer.testing import CliRunner

from data.events import EventKind
from execution.copy.engine import CopyEngine, EngineConfig
from execution.copy_cli import register
from execution.venues.paper import DictPriceFeed, PaperVenue
from infra import db
from infra.settings import get_settings
from tests.execution.copy_fixtures import BTC, CATALOGUE, LEADER, leader_event
from tests.execution.engines import VANTA, engine_env

pytestmark = pytest.mark.integration
WALLET = "0x" + "cd" * 20

# (arguments after `vanta follow add`, the one line expected on stderr)
MALFORMED = [
    (["not-an-address", "--user", "7", "--fixed", "100"], "LEADER: 'not-an-address' is not a 0x address"),
    (["", "--user", "7", "--fixed", "100"], "LEADER: '' is not a 0x address"),
    (["0x12", "--user", "7", "--fixed", "100"], "LEADER: '0x12' is not a 0x address"),
    (
        ["'; DROP TABLE users; --", "--user", "7", "--fixed", "1"],
        'LEADER: "\'; DROP TABLE users; --" is not a 0x',
    ),
    ([LEADER, "--user", "7", "--fixed", "-5"], "--fixed: -5 must be more than 0 USDC"),
    ([LEADER, "--user", "7", "--fixed", "1e12"], "--fixed: 1E+12 is more than the 10,000,000 USDC allowed"),
    ([LEADER, "--user", "7", "--fixed", "NaN"], "--fixed: 'NaN' is not a finite number"),
    ([LEADER, "--user", "7", "--fixed", "abc"], "--fixed: 'abc' is not a number"),
    ([LEADER, "--user", "7", "--fixed", "1.1234567"], "--fixed: 1.1234567 USDC has more than 6 decimals"),
    ([LEADER, "--user", "7", "--fixed", "10", "--cap", "-1"], "--cap: -1 must be more than 0 USDC"),
    (
        [LEADER, "--user", "7", "--mode", "equity_pct", "--pct", "-1", "--equity", "1000"],
        "--pct: -1 must be more than 0 %",
    ),
    (
        [LEADER, "--user", "7", "--mode", "equity_pct", "--pct", "500", "--equity", "1000"],
        "--pct: 500 is more than the 100 % allowed",
    ),
    (
        [LEADER, "--user", "7", "--mode", "multiplier", "--multiplier", "NaN"],
        "--multiplier: 'NaN' is not a finite",
    ),
    (
        [LEADER, "--user", "7", "--mode", "multiplier", "--multiplier", "1e6"],
        "--multiplier: 1E+6 is more than the 100 allowed",
    ),
    (
        [LEADER, "--user", "7", "--fixed", "10", "--leverage-cap", "0"],
        "--leverage-cap: 0 must be more than 0x",
    ),
    (
        [LEADER, "--user", "7", "--fixed", "10", "--leverage-cap", "0.5"],
        "--leverage-cap: 0.5 must be at least 1x",
    ),
    (
        [LEADER, "--user", "7", "--fixed", "10", "--leverage-cap", "inf"],
        "--leverage-cap: 'inf' is not a finite",
    ),
    (
        [LEADER, "--user", "7", "--fixed", "10", "--max-position", "-100"],
        "--max-position: -100 must be more than 0",
    ),
    ([LEADER, "--user", "7", "--fixed", "10", "--equity", "-5"], "--equity: -5 must be at least 0 USDC"),
    ([LEADER, "--user", "7", "--fixed", "10", "--equity", "1e20"], "--equity: 1E+20 is more than the"),
    (
        [LEADER, "--user", "7", "--mode", "equity_pct", "--pct", "5"],
        "--equity: equity_pct sizing needs the profile's equity",
    ),
    (
        [LEADER, "--user", "7", "--mode", "proportional"],
        "--equity: proportional sizing needs the profile's equity",
    ),
    ([LEADER, "--user", "7", "--mode", "fixed"], "--fixed: fixed sizing needs its amount"),
    (
        [LEADER, "--user", "7", "--fixed", "10", "--pct", "5"],
        "--pct: applies to equity_pct sizing, not fixed",
    ),
    (
        [LEADER, "--user", "7", "--mode", "martingale"],
        "--mode: 'martingale' is not one of: fixed, equity_pct",
    ),
    (
        [LEADER, "--user", "7", "--fixed", "10", "--side", "sideways"],
        "--side: 'sideways' is not one of: both, long",
    ),
    (
        [LEADER, "--user", "7", "--fixed", "10", "--venue", "binance"],
        "--venue: unknown venue 'binance': choose paper",
    ),
    (
        [LEADER, "--user", "7", "--fixed", "10", "--venue", "onchain"],
        "--wallet: the onchain venue needs the follower",
    ),
    (
        [LEADER, "--user", "7", "--fixed", "10", "--venue", "onchain", "--wallet", "0x12"],
        "--wallet: '0x12' is not a 0x address",
    ),
    ([LEADER, "--user", "2**63", "--fixed", "10"], "--user: '2**63' is not a Telegram user id"),
    (
        [LEADER, "--user", str(2**63), "--fixed", "10"],
        "--user: '9223372036854775808' is not a Telegram user id",
    ),
    ([LEADER, "--user", "-1", "--fixed", "10"], "--user: '-1' is not a Telegram user id"),
    (
        [LEADER, "--user", "7", "--fixed", "10", "--slippage-bps", "-1"],
        "--slippage-bps: '-1' is not a whole number",
    ),
    ([LEADER, "--user", "7", "--fixed", "10", "--block", "abc"], "--block: 'abc' is not a whole number"),
]


@pytest.fixture
def cli(empty_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.setenv("DATABASE_URL", empty_db_url)
    monkeypatch.setenv("VANTA_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    app = typer.Typer()
    register(app)
    yield app
    get_settings.cache_clear()


def invoke(app: typer.Typer, *args: str) -> tuple[int, str, str, BaseException | None]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr, result.exception


def query(url: str, sql: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_follow_add_refuses_each_malformed_input_in_one_line_leaving_nothing(
    cli: typer.Typer, empty_db_url: str
) -> None:
    for args, expected in MALFORMED:
        code, out, err, exc = invoke(cli, "follow", "add", *args)
        assert (code, out) == (2, ""), (args, code, out, err, exc)
        assert isinstance(exc, SystemExit), (args, exc)  # no traceback: a clean exit
        assert err.count("\n") == 1 and err.startswith(f"vanta: {expected}"), (args, err)
    (row,) = query(
        empty_db_url,
        "SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM copytrader_profiles) AS profiles, "
        "(SELECT count(*) FROM copy_configurations) AS configs, (SELECT count(*) FROM leader_follows) AS follows",
    )
    assert dict(row) == {"users": 0, "profiles": 0, "configs": 0, "follows": 0}


def test_copies_and_reconcile_speak_to_people(cli: typer.Typer, empty_db_url: str) -> None:
    code, out, err, _ = invoke(cli, "copies", "--follower", "999")
    assert (code, err) == (2, "vanta: no such profile 999\n")
    code, out, _, _ = invoke(cli, "follow", "add", LEADER, "--user", "7", "--fixed", "100", "--json")
    assert code == 0, out
    code, out, _, _ = invoke(
        cli,
        "follow",
        "add",
        LEADER,
        "--user",
        "7",
        "--fixed",
        "100",
        "--venue",
        "onchain",
        "--wallet",
        WALLET,
    )
    assert code == 2  # the profile "default" trades on paper
    (pid,) = [r["id"] for r in query(empty_db_url, "SELECT id FROM copytrader_profiles")]
    query(empty_db_url, "UPDATE leader_follows SET followed_at = now() - interval '10 seconds'")
    asyncio.run(copy_one_open(empty_db_url))

    code, out, err, _ = invoke(cli, "copies", "--follower", str(pid), "--recent", "5")
    assert code == 0, err
    assert "PnL per leader" in out and "0xabab…abab" in out and "Open copies" in out and "BTC/USD" in out
    assert "Recent copies and refusals" in out and "filled" in out
    code, out, _, _ = invoke(cli, "copies", "--follower", str(pid), "--json")
    assert code == 0 and '"per_leader"' in out and '"fees_usdc"' in out
    code, out, err, _ = invoke(cli, "reconcile")
    assert (code, out) == (0, "No drift: every paper profile's open copies match the venue.\n"), err
    code, out, err, _ = invoke(cli, "reconcile", "--venue", "binance")
    assert (code, err) == (2, "vanta: --venue: unknown venue 'binance': choose paper, onchain, veranta\n")
    code, out, err, _ = invoke(cli, "notifications", "--user", "7", "--json")
    assert code == 0 and "Copied 0xabababab: LONG BTC/USD 99.55 USDC x10 at 60000" in out, out + err
    code, out, err, _ = invoke(cli, "notifications", "--user", "7")
    assert code == 0 and "Notifications" in out and "fill" in out


async def copy_one_open(url: str) -> None:
    pool = await db.create_pool(url)
    try:
        feed = DictPriceFeed({BTC: Decimal(60_000)})
        venue = PaperVenue(pool, CATALOGUE, feed, spread_bps=0)
        async with CopyEngine(
            pool, None, venue, feed, CATALOGUE, EngineConfig(max_delay_ms=60_000)
        ) as engine:
            assert (await engine.handle(leader_event(EventKind.OPEN)))["filled"] == 1
    finally:
        await pool.close()


def test_a_refused_input_in_a_real_process_is_one_line(
    empty_db_url: str, redis_server_url: str, tmp_path: Path
) -> None:
    env = engine_env(empty_db_url, redis_server_url, tmp_path / "home")
    done = subprocess.run(
        [VANTA, "follow", "add", "not-an-address", "--user", "1", "--fixed", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "vanta: LEADER: 'not-an-address' is not a 0x address (0x and 40 hex digits)\n"
