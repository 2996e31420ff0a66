"""Decorators for handlers: dialog steps (see `bot.app` for why they stop other handlers) and
admin-only commands."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from telegram import Update
from telegram.ext import ApplicationHandlerStop

from bot.deps import deps
from bot.errors import tell_user
from bot.replies import Context, ack, say, user_id
from bot.views import start as start_view

Handler = Callable[[Update, Context], Awaitable[None]]


def dialog_step(fn: Callable[[Update, Context], Awaitable[object]]) -> Handler:
    """A dialog callback: returns the next state, and nothing after it handles the update. If it
    fails, the user is told (`bot.errors`) and stays at the same question."""

    @functools.wraps(fn)
    async def step(update: Update, context: Context) -> None:
        try:
            state = await fn(update, context)
        except Exception as err:
            await tell_user(update, context, err)
            raise ApplicationHandlerStop from None
        raise ApplicationHandlerStop(state)

    return step


def admin_only(fn: Handler) -> Handler:
    """Commands for the operators in TELEGRAM_ADMIN_IDS; anyone else is told so and nothing runs."""

    @functools.wraps(fn)
    async def guarded(update: Update, context: Context) -> None:
        if not deps(context).is_admin(user_id(update)):
            await ack(update, context)
            await say(update, context, start_view.ADMINS_ONLY)
            return
        await fn(update, context)

    return guarded
