"""The last `vanta demo` step: a short scripted chat with the bot in the console transport (the
real handlers, on the demo's database and its own run of the AI service), then how to talk to it
yourself."""

from __future__ import annotations

import asyncio
import logging
import time

from rich.console import Console

from bot.console import run_console
from bot.wiring import open_bot_deps
from infra.runtime import Services
from serving.serve_demo import demo_service

SCRIPT = ["/start", "/alfa", "/alpha", "/copytrader", "/cancel"]
DEMO_USER = 100


async def talk_to_the_bot(services: Services) -> dict[str, object]:
    out = Console(stderr=True, highlight=False, soft_wrap=True)
    out.rule("[bold]The Telegram bot, in the console[/bold]")
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    for line in [*SCRIPT, None]:
        lines.put_nowait(line)
    started = time.perf_counter()
    quiet = {name: logging.getLogger(name) for name in ("telegram", "vanta.bot", "vanta.serving.client")}
    levels = {name: logger.level for name, logger in quiet.items()}
    for logger in quiet.values():
        logger.setLevel(logging.ERROR)  # the transcript says what happened; JSON logs would drown it
    try:
        async with (
            demo_service(services, "bot-demo-serve.log") as (service, _),
            open_bot_deps(services, serving_url=service.url) as deps,
        ):
            await run_console(
                services,
                deps,
                lines,
                user_id=DEMO_USER,
                out=out,
                echo=True,
                deliver=False,
                stop=asyncio.Event(),
            )
    finally:
        for name, logger in quiet.items():
            logger.setLevel(levels[name])
    how = {
        "console": ".venv/bin/vanta bot --console   (no token needed; add --admin for /kill and /health)",
        "telegram": "set TELEGRAM_BOT_TOKEN (from @BotFather) in .env, then .venv/bin/vanta bot",
    }
    out.rule()
    out.print("[bold]Talk to the bot yourself:[/bold]")
    for way, command in how.items():
        out.print(f"  {way}: {command}")
    return {"script": SCRIPT, "seconds": round(time.perf_counter() - started, 1), "how": how}
