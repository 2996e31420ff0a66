"""Admin only (TELEGRAM_ADMIN_IDS): /kill, the kill switch that stops every copy across every
engine (with a confirmation), and /health (the copy service, the AI service, the alert outbox).

Callback data: `ad:kill:on|off` (asks to confirm), `ad:killy:on|off` (confirmed).
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot import outbox
from bot.deps import deps
from bot.dialog import admin_only
from bot.replies import Context, ack, show, user_id
from bot.views import admin as view
from execution.copy.engine import KILL_SWITCH_KEY
from execution.copy.service import Actor
from infra.logs import log_fields
from serving.client import Unknown

log = logging.getLogger("vanta.bot.admin")


async def _kill_switch_on(context: Context) -> bool:
    redis = deps(context).service.redis
    return redis is not None and await redis.get(KILL_SWITCH_KEY) == "1"


@admin_only
async def kill(update: Update, context: Context) -> None:
    on = await _kill_switch_on(context)
    await show(update, context, view.kill_state(on), view.kill_keyboard(on))


@admin_only
async def kill_ask(update: Update, context: Context) -> None:
    assert update.callback_query is not None and update.callback_query.data is not None
    turn_on = update.callback_query.data.endswith(":on")
    await show(update, context, view.kill_confirm(turn_on), view.kill_confirm_keyboard(turn_on))


@admin_only
async def kill_confirmed(update: Update, context: Context) -> None:
    assert update.callback_query is not None and update.callback_query.data is not None
    turn_on = update.callback_query.data.endswith(":on")
    # The bot checked the admin list (TELEGRAM_ADMIN_IDS); it acts as the operator, and says who.
    await deps(context).service.kill_switch(Actor.operator(), turn_on)
    log.warning("kill switch set from Telegram", extra=log_fields(on=turn_on, admin=user_id(update)))
    await ack(update, context, "Kill switch " + ("ON" if turn_on else "OFF"))
    await show(update, context, view.kill_state(turn_on), view.kill_keyboard(turn_on))


@admin_only
async def health(update: Update, context: Context) -> None:
    d = deps(context)
    serving = await d.market.health()
    backlog = await outbox.backlog(d.pool)
    await show(
        update,
        context,
        view.health(
            kill_switch=await _kill_switch_on(context),
            serving=None if isinstance(serving, Unknown) else serving,
            serving_reason=serving.reason if isinstance(serving, Unknown) else None,
            backlog=backlog,
        ),
    )


HANDLERS: list[BaseHandler] = [
    CommandHandler("kill", kill),
    CommandHandler("health", health),
    CallbackQueryHandler(kill_ask, pattern=r"^ad:kill:(on|off)$"),
    CallbackQueryHandler(kill_confirmed, pattern=r"^ad:killy:(on|off)$"),
]
