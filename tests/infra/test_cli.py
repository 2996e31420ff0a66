"""`vanta db ...` as an operator runs it: a real process, embedded or external servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.test_db import TABLES, VIEWS
from tests.servers import hand_started_postgres, hand_started_redis

pytestmark = pytest.mark.integration

VANTA = str(Path(sys.executable).parent / "vanta")


def run_vanta(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return subprocess.run([VANTA, *args], env={**base, **env}, capture_output=True, text=True, timeout=120)


def test_migrate_and_status_on_an_empty_home(tmp_path: Path) -> None:
    env = {"VANTA_HOME": str(tmp_path / "home")}
    migrate = run_vanta("db", "migrate", env=env)
    assert migrate.returncode == 0, migrate.stderr
    status = run_vanta("db", "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    result = json.loads(status.stdout)
    assert result["migrations_applied"] == result["migrations_known"] >= 4
    assert TABLES <= set(result["tables"]) and VIEWS == set(result["views"])
    assert (tmp_path / "home" / "pg" / "PG_VERSION").exists()
    again = run_vanta("db", "migrate", env=env)
    assert json.loads(again.stdout) == {"applied_now": []}


def test_database_url_points_at_an_external_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with hand_started_postgres(tmp_path) as url:
        env = {"VANTA_HOME": str(home), "DATABASE_URL": url}
        assert run_vanta("db", "migrate", env=env).returncode == 0
        result = json.loads(run_vanta("db", "status", "--json", env=env).stdout)
        assert TABLES <= set(result["tables"])
        # The tables are in the hand-started server, and no embedded server was created.
        import asyncio

        import asyncpg

        async def count() -> int:
            conn = await asyncpg.connect(url)
            try:
                return await conn.fetchval("SELECT count(*) FROM schema_migrations")
            finally:
                await conn.close()

        assert asyncio.run(count()) == result["migrations_applied"]
    assert not (home / "pg").exists()


async def test_redis_url_points_at_an_external_server(tmp_path: Path) -> None:
    from infra import bus, embedded
    from infra.settings import load_settings

    with hand_started_redis(tmp_path) as url:
        settings = load_settings(_env_file=None, redis_url=url, vanta_home=tmp_path / "home")
        resolved = embedded.redis_url(settings)
        assert resolved == url
        client = bus.connect(resolved)
        assert await client.ping()
        info = await client.info("server")
        assert int(info["tcp_port"]) == int(url.rsplit(":", 1)[1].split("/")[0])
        await client.aclose()
    assert not (tmp_path / "home" / "redis").exists()


def test_bad_setting_stops_the_command_with_the_variable_named(tmp_path: Path) -> None:
    result = run_vanta(
        "db", "status", env={"VANTA_HOME": str(tmp_path), "COPY_EXECUTION_MAX_DELAY_MS": "fast"}
    )
    assert result.returncode == 2
    assert "COPY_EXECUTION_MAX_DELAY_MS" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["db", "status"], ["track"], ["index", "tail"]],  # infra's, execution's and data's commands
)
def test_unreachable_database_is_one_line_naming_the_masked_server(tmp_path: Path, args: list[str]) -> None:
    from tests.servers import free_port

    url = f"postgresql://vanta:hunter2secret@127.0.0.1:{free_port()}/vanta"
    result = run_vanta(*args, env={"VANTA_HOME": str(tmp_path), "DATABASE_URL": url, "METRICS_PORT": "0"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "vanta: cannot reach PostgreSQL at postgresql://127.0.0.1:"
        + url.split(":")[3].split("/")[0]
        + ": ConnectionRefusedError: "
        + result.stderr.split("ConnectionRefusedError: ", 1)[1].strip()
    ]
    assert "hunter2" not in result.stderr


def test_invalid_delegate_key_stops_every_command_naming_the_variable(tmp_path: Path) -> None:
    result = run_vanta("db", "status", env={"VANTA_HOME": str(tmp_path), "COPY_DELEGATE_KEY": "0xdeadbeef"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "vanta: invalid configuration: COPY_DELEGATE_KEY: Value error, "
        "must be a private key: 64 hex digits, optionally 0x-prefixed"
    ]
