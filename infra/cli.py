"""The `vanta` command. infra owns the root and the `db` group; every other layer adds its own
sub-commands through the `vanta.cli` entry-point group, so infra never imports upward."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, TypeVar

import typer

from infra.settings import SettingsError, get_settings

if TYPE_CHECKING:
    import asyncpg

T = TypeVar("T")

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Vanta: copy trading for Avantis perpetuals."
)
db_app = typer.Typer(no_args_is_help=True, help="PostgreSQL schema.")
app.add_typer(db_app, name="db")
services_app = typer.Typer(no_args_is_help=True, help="The embedded PostgreSQL and Redis of VANTA_HOME.")
app.add_typer(services_app, name="services")


def emit_json(payload: object) -> None:
    """One JSON document on stdout: what every `--json` command prints."""
    typer.echo(json.dumps(payload, default=str))


async def _on_one_connection(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run `work` on one connection to the configured (or embedded) PostgreSQL, then close it."""
    from infra import db, embedded

    pool = await db.create_pool(embedded.database_url(get_settings()), max_size=1)
    try:
        async with pool.acquire() as conn:
            return await work(conn)
    finally:
        await pool.close()


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the numbered SQL migrations not yet applied (idempotent)."""
    import asyncio

    from infra import db

    applied = asyncio.run(_on_one_connection(db.migrate))
    emit_json({"applied_now": applied})


@db_app.command("status")
def db_status(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Migrations applied, tables and views."""
    import asyncio

    from infra import db

    result = asyncio.run(_on_one_connection(db.status))
    if as_json:
        emit_json(result)
    else:
        typer.echo(f"migrations applied: {result['migrations_applied']} of {result['migrations_known']}")
        typer.echo("tables: " + ", ".join(result["tables"]))  # type: ignore[arg-type]
        typer.echo("views: " + ", ".join(result["views"]))  # type: ignore[arg-type]


@services_app.command("status")
def services_status(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Each server: external (its masked URL), or embedded with its PID (none when stopped) and
    the PIDs of the processes using it. Embedded servers stop when their last user is gone."""
    from infra import embedded
    from infra.logs import mask_url

    settings = get_settings()
    local = embedded.status(settings.vanta_home)
    result: dict[str, dict[str, object]] = {}
    for name, external in (("postgres", settings.database_url), ("redis", settings.redis_url)):
        if external is not None:
            result[name] = {"mode": "external", "url": mask_url(external.get_secret_value())}
        else:
            result[name] = {"mode": "embedded", **local[name]}
    if as_json:
        emit_json(result)
        return
    for name, info in result.items():
        if info["mode"] == "external":
            typer.echo(f"{name}: external at {info['url']}")
        elif info["pid"] is None:
            typer.echo(f"{name}: embedded, stopped")
        else:
            users = ", ".join(str(u) for u in info["users"]) or "none"  # type: ignore[attr-defined]
            typer.echo(f"{name}: embedded, pid {info['pid']}, used by {users}")


@db_app.command("check")
def db_check(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Run every consistency check the layers register (`vanta.check` entry points: `async def
    run(conn) -> {"name", "ok", "count", "detail"}`); exit 1 if any fails."""
    import asyncio

    results = asyncio.run(_on_one_connection(run_checks))
    if as_json:
        emit_json({"ok": all(r["ok"] for r in results), "checks": results})
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="vanta db check")
        for col in ("check", "result", "count", "detail"):
            table.add_column(col)
        for r in results:
            detail = list(r["detail"])
            shown = "\n".join(str(d) for d in detail[:5]) + (
                f"\n… {len(detail) - 5} more" if len(detail) > 5 else ""
            )
            table.add_row(
                r["name"], "[green]ok[/green]" if r["ok"] else "[red]FAIL[/red]", str(r["count"]), shown
            )
        Console().print(table)
    if not all(r["ok"] for r in results):
        raise typer.Exit(1)


async def run_checks(conn: asyncpg.Connection) -> list[dict[str, object]]:
    """Each registered check, in name order; a check that cannot run is a failed check, named."""
    results: list[dict[str, object]] = []
    for ep in sorted(entry_points(group="vanta.check"), key=lambda e: e.name):
        try:
            result = dict(await ep.load()(conn))
        except Exception as exc:  # a broken check must show as a failure, not hide the others
            result = {
                "name": ep.name,
                "ok": False,
                "count": 0,
                "detail": [f"did not run: {type(exc).__name__}: {exc}"],
            }
        results.append(result)
    return results


def _register_plugins() -> None:
    for ep in sorted(entry_points(group="vanta.cli"), key=lambda e: e.name):
        register = ep.load()
        register(app)


def _stopped_by_signal(exc: BaseException) -> bool:
    """A KeyboardInterrupt or asyncio cancellation that a SIGINT/SIGTERM caused. Looked up in
    `sys.modules`: a command that never imported asyncio or `infra.runtime` (`pnl fifo`) should
    not pay for importing them at start (redis alone costs a tenth of a second)."""
    runtime = sys.modules.get("infra.runtime")
    if runtime is None or not runtime.stop_requested.is_set():
        return False
    cancelled = getattr(sys.modules.get("asyncio"), "CancelledError", KeyboardInterrupt)
    return isinstance(exc, (KeyboardInterrupt, cancelled))


def main() -> None:
    """The `vanta` entry point. Failures the user can act on end in one line on stderr: bad
    settings (exit 2), a server that cannot be reached or went away mid-run, or any other
    `UserFacingError` (exit 1).
    A service stopped by SIGINT/SIGTERM exits 0 even if it had to be cancelled mid-step."""
    from infra.errors import UserFacingError
    from infra.logs import SecretMasker, configure_logging

    try:
        settings = get_settings()
    except SettingsError as exc:
        typer.echo(f"vanta: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings.log_level, settings.secret_values())
    _register_plugins()
    try:
        app()
    except UserFacingError as exc:
        typer.echo(f"vanta: {SecretMasker(settings.secret_values())(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except BaseException as exc:
        if _stopped_by_signal(exc):
            sys.exit(0)
        if not isinstance(exc, Exception):  # SystemExit, KeyboardInterrupt, a cancellation
            raise
        from infra.reconnect import describe, is_transient

        if not is_transient(exc):
            raise
        # A one-shot command whose PostgreSQL or Redis went away mid-run (services wait instead):
        # what it committed stays, the rest is for a rerun.
        lost = SecretMasker(settings.secret_values())(describe(exc).splitlines()[0])
        typer.echo(f"vanta: lost a server mid-run ({lost}); run the command again", err=True)
        sys.exit(1)


@app.command("demo")
def demo(as_json: bool = typer.Option(False, "--json", help="print every figure as JSON")) -> None:
    """Start the embedded services, migrate, then run every layer's demo step in order.

    Layers add steps through the `vanta.demo` entry-point group: `step(services) -> dict`, awaited
    in name order. A step's `summary` (lines) and `table` ({"title", "columns", "rows"}) are
    what a person reads; `--json` prints every step's whole dict.
    """
    import asyncio

    from rich.console import Console
    from rich.table import Table

    from infra.runtime import open_services

    console = Console()

    def show(result: dict[str, object]) -> None:
        for line in result.get("summary") or []:  # type: ignore[union-attr]
            console.print(str(line))
        table = result.get("table")
        if isinstance(table, dict):
            drawn = Table(title=str(table.get("title", "")))
            for col in table.get("columns", []):
                drawn.add_column(str(col))
            for row in table.get("rows", []):
                drawn.add_row(*map(str, row))
            console.print(drawn)

    async def run() -> dict[str, object]:
        settings = get_settings()
        summary: dict[str, object] = {}
        async with open_services(settings) as services:
            async with services.pool.acquire() as conn:
                from infra import db

                summary["services"] = services.describe()
                summary["schema"] = await db.status(conn)
            where = ", ".join(f"{k} {v}" for k, v in services.describe().items())
            if not as_json:
                console.print(f"[bold]Vanta demo[/bold] ({where}; schema migrated)")
            for ep in sorted(entry_points(group="vanta.demo"), key=lambda e: e.name):
                result = await ep.load()(services)
                summary[ep.name] = result
                if not as_json:
                    show(result)
        return summary

    figures = asyncio.run(run())
    if as_json:
        emit_json(figures)
    else:
        console.print("[dim]vanta demo --json prints every figure[/dim]")


@app.command("bench")
def bench(only: str = typer.Option("", help="comma-separated benchmark names to run")) -> None:
    """Run the benchmarks every layer registers (`vanta.bench` entry points) and print JSON figures."""
    import asyncio
    import platform
    import time

    wanted = {n for n in only.split(",") if n}
    figures: dict[str, object] = {
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()}
    }
    for ep in sorted(entry_points(group="vanta.bench"), key=lambda e: e.name):
        if wanted and ep.name not in wanted:
            continue
        started = time.perf_counter()
        result = ep.load()()
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        figures.update(result)
        typer.echo(f"bench {ep.name}: {time.perf_counter() - started:.1f}s", err=True)
    emit_json(figures)
