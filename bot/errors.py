"""A handler that failed: the user is told in words, the operator gets the traceback in the log.

The copy service's errors (`CopyError`) carry a sentence for people: a limit out of range, a
profile that isn't theirs. Anything else is our fault and is said so, without details."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import TelegramError

from bot.replies import Context, ack, say
from bot.views import start as start_view
from bot.views.common import esc
from execution.copy.service import CopyError
from infra.logs import log_fields

log = logging.getLogger("vanta.bot")


async def tell_user(update: object, context: Context, err: BaseException | None) -> None:
    message = None
    if isinstance(err, CopyError):
        message = f"I couldn't do that: {esc(err.problem)}."
    if message is None:
        log.error("a handler failed", exc_info=err, extra=log_fields(error_type=type(err).__name__))
        message = start_view.OUR_FAULT
    if isinstance(update, Update) and update.effective_chat is not None:
        try:
            if update.callback_query is not None:
                await ack(update, context)
            await say(update, context, message)
        except TelegramError as exc:
            log.warning("could not tell the user about an error", extra=log_fields(error=str(exc)))


async def on_error(update: object, context: Context) -> None:
    """The application's error handler (failures outside the dialog)."""
    await tell_user(update, context, context.error)
