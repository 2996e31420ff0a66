"""`vanta bot`: the Telegram bot (with `--console`, the same bot in a terminal, no token needed)."""

from __future__ import annotations

import asyncio
import sys

import typer

from infra.settings import get_settings


def bot(
    console: bool = typer.Option(False, "--console", help="chat with the bot in this terminal (no token)"),
    user_id: int = typer.Option(100, help="--console: the Telegram user id you play"),
    admin: bool = typer.Option(False, help="--console: you are an admin (/kill, /health)"),
    delivery: bool = typer.Option(True, help="also deliver the notifications outbox"),
) -> None:
    """Run the Telegram bot until SIGINT/SIGTERM (or, in the console, until end of input)."""
    settings = get_settings()
    if not console and settings.telegram_bot_token is None:
        typer.echo("vanta bot: TELEGRAM_BOT_TOKEN is not set (or try `vanta bot --console`)", err=True)
        raise typer.Exit(2)
    if console:
        asyncio.run(_run_console(user_id, admin, delivery))
    else:
        asyncio.run(_run_telegram(delivery))


async def _run_telegram(delivery: bool) -> None:
    from bot.app import build_application
    from bot.runner import delivery_worker, run_bot
    from bot.wiring import open_bot_deps
    from infra.runtime import open_services, stop_on_signals

    settings = get_settings()
    assert settings.telegram_bot_token is not None
    stop = stop_on_signals()
    async with open_services(settings) as services, open_bot_deps(services) as deps:
        app = build_application(
            deps,
            services.pool,
            token=settings.telegram_bot_token.get_secret_value(),
            base_url=settings.telegram_api_base_url,
        )
        await run_bot(app, stop, worker=delivery_worker(app, services) if delivery else None)


async def _run_console(user_id: int, admin: bool, delivery: bool) -> None:
    import logging

    from rich.console import Console

    from bot.console import read_stdin, run_console
    from bot.wiring import open_bot_deps
    from infra.runtime import open_services, stop_on_signals

    settings = get_settings()
    out = Console(highlight=False, soft_wrap=True)
    if settings.log_level != "DEBUG":  # the terminal is the chat: keep routine logs out of it
        for name in ("telegram", "vanta.bot", "httpx"):
            logging.getLogger(name).setLevel(logging.WARNING)
    stop = stop_on_signals()
    async with (
        open_services(settings) as services,
        open_bot_deps(services, extra_admins=frozenset({user_id}) if admin else frozenset()) as deps,
    ):
        out.print(
            f"[bold]Vanta console[/bold]: you are Telegram user {user_id}"
            f"{' (admin)' if admin else ''}. Type /start. Press a button with #1, #2, ... "
            "Ctrl-D (end of input) quits."
        )
        lines = read_stdin(asyncio.get_running_loop())
        await run_console(
            services,
            deps,
            lines,
            user_id=user_id,
            out=out,
            echo=not sys.stdin.isatty(),
            deliver=delivery,
            stop=stop,
        )


def register(app: typer.Typer) -> None:
    app.command("bot")(bot)
