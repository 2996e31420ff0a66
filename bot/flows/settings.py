"""/settings: the notification level (callback data `se:<level>`)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot import preferences
from bot.deps import deps
from bot.replies import Context, ack, show, user_id
from bot.views import settings as view


async def settings(update: Update, context: Context) -> None:
    level = await preferences.notify_level(deps(context).pool, user_id(update))
    await show(update, context, view.settings(level), view.keyboard(level))


async def choose(update: Update, context: Context) -> None:
    assert update.callback_query is not None and update.callback_query.data is not None
    level = update.callback_query.data.split(":")[1]
    await preferences.set_notify_level(deps(context).pool, user_id(update), level)
    await ack(update, context, "Saved")
    await show(update, context, view.saved(level), view.keyboard(level))


HANDLERS: list[BaseHandler] = [
    CommandHandler("settings", settings),
    CallbackQueryHandler(choose, pattern=r"^se:(info|fill|warning|critical)$"),
]
