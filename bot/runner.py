"""Running the bot: polling for updates, the handlers, and the notification delivery worker, until
asked to stop. `vanta bot` and the end-to-end tests run exactly this."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from telegram import Update
from telegram.ext import Application

from bot.app import set_commands
from bot.delivery import DeliveryWorker
from bot.deps import BotDeps
from bot.notices import blocked_handler, renderer
from bot.pace import SendPace
from infra.runtime import Services

log = logging.getLogger("vanta.bot")


async def run_bot(
    app: Application[Any, Any, Any, Any, Any, Any],
    stop: asyncio.Event,
    *,
    worker: DeliveryWorker | None = None,
    poll_timeout: int = 10,
) -> None:
    async with app:  # initialize: getMe, persistence loaded
        await set_commands(app)
        assert app.updater is not None
        await app.updater.start_polling(
            timeout=poll_timeout,
            allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY],
            drop_pending_updates=False,  # what users sent while we were down is still answered
        )
        await app.start()
        delivery = asyncio.create_task(worker.run(stop), name="delivery") if worker else None
        log.info("bot running", extra={"fields": {"bot": app.bot.username}})
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait(
                [stopped, *([delivery] if delivery else [])], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.set()
            stopped.cancel()
            await app.updater.stop()
            await app.stop()
            if delivery is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await delivery  # re-raises the worker's failure, if that is why we stopped


def delivery_worker(
    app: Application[Any, Any, Any, Any, Any, Any], services: Services, *, only_chats: list[int] | None = None
) -> DeliveryWorker:
    """The outbox's delivery worker on the app's bot, at the configured pace."""
    settings = services.settings
    deps: BotDeps = app.bot_data["vanta_deps"]
    return DeliveryWorker(
        services.pool,
        app.bot,
        SendPace(settings.telegram_max_msgs_per_s, settings.telegram_chat_interval_s),
        render=renderer(deps),
        on_blocked=blocked_handler(deps),
        only_chats=only_chats,
    )
