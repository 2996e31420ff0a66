"""`vanta bot`: the Telegram bot (with `--console`, the same bot in a terminal, no token needed)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

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


def _worker(app, services, *, only_chats: list[int] | None = None):  # type: ignore[no-untyped-def]
    from bot.delivery import DeliveryWorker
    from bot.notices import blocked_handler, renderer
    from bot.pace import SendPace

    settings = services.settings
    pace = SendPace(settings.telegram_max_msgs_per_s, settings.telegram_chat_interval_s)
    deps = app.bot_data["vanta_deps"]
    return DeliveryWorker(
        services.pool,
        app.bot,
        pace,
        render=renderer(deps),
        on_blocked=blocked_handler(deps),
        only_chats=only_chats,
    )


async def _run_telegram(delivery: bool) -> None:
    from bot.app import build_application
    from bot.runner import run_bot
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
        await run_bot(app, stop, worker=_worker(app, services) if delivery else None)


async def _run_console(user_id: int, admin: bool, delivery: bool) -> None:
    import logging

    from rich.console import Console

    from bot.app import build_application
    from bot.console import ConsoleChat, ConsoleRequest, read_stdin
    from bot.runner import run_bot
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
        chat = ConsoleChat(user_id, out, Path(settings.vanta_home) / "console")
        app = build_application(
            deps,
            services.pool,
            token="0:console",
            base_url="console:",
            request=ConsoleRequest(chat),
            updates_request=ConsoleRequest(chat),
        )
        out.print(
            f"[bold]Vanta console[/bold]: you are Telegram user {user_id}"
            f"{' (admin)' if admin else ''}. Type /start. Press a button with #1, #2, ... "
            "Ctrl-D (end of input) quits."
        )
        lines = read_stdin(asyncio.get_running_loop())
        worker = _worker(app, services, only_chats=[user_id]) if delivery else None
        bot_task = asyncio.create_task(run_bot(app, stop, worker=worker, poll_timeout=1))
        try:
            await _feed(chat, app, lines, stop, echo=not sys.stdin.isatty(), out=out)
        finally:
            stop.set()
            await bot_task


async def _feed(chat, app, lines, stop, *, echo: bool, out) -> None:  # type: ignore[no-untyped-def]
    """Typed lines to the bot one at a time, each after the bot has finished the previous one
    (so a scripted `#2` presses a button that exists by then)."""
    processor = app.update_processor
    pushed = 0
    while not stop.is_set():
        getter = asyncio.create_task(lines.get())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([getter, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not getter.done():
            getter.cancel()
            return
        line = getter.result()
        if line is None:
            await _idle(processor, pushed, stop)
            return
        if echo and line.strip():
            from rich.text import Text

            out.print(Text.assemble(("you> ", "bold"), line.rstrip()))
        before = chat.pushed
        chat.typed(line)
        pushed += chat.pushed - before
        await _idle(processor, pushed, stop)


async def _idle(processor, pushed: int, stop: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
    waiting = asyncio.create_task(processor.wait_processed(pushed))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([waiting, stopping], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    stopping.cancel()


def register(app: typer.Typer) -> None:
    app.command("bot")(bot)
