"""The bot's `Application`: handlers of every flow in their groups, state in PostgreSQL, errors
answered in words.

Handler groups, in the order python-telegram-bot runs them (one handler per group at most):

- -1: the per-user rate limit; over it, nothing else runs.
- 0: the dialog: one persistent `ConversationHandler` holding every question that waits for a
  typed answer (/copytrader's fields, /follow's address). One conversation per user means a new
  command simply leaves the old question (the command is then handled in group 1), and a typed
  answer can never land in a question the user has moved on from. A dialog step's answer is
  final (`dialog_step` raises `ApplicationHandlerStop`), so group 1 never answers it twice.
- 1: every stand-alone command and button of every flow, then what nobody took (unknown command,
  free text).
- 2: any button press still unanswered gets "this button is old" (no endless spinner).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import asyncpg
from telegram import BotCommand, BotCommandScopeChat, Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.request import BaseRequest
from telegram.warnings import PTBUserWarning

from bot.deps import BotDeps, deps, install
from bot.dialog import dialog_step
from bot.errors import on_error
from bot.persistence import PostgresPersistence, SavingUpdateProcessor
from bot.replies import Context, ack, say
from bot.views import start as start_view
from infra.logs import log_fields

log = logging.getLogger("vanta.bot")
DIALOG = "dialog"


async def _gate(update: Update, context: Context) -> None:
    if update.effective_user is None:
        raise ApplicationHandlerStop
    verdict = await deps(context).limiter.check(update.effective_user.id)
    if verdict.allowed:
        return
    if verdict.tell_user:
        text = start_view.SLOW_DOWN.format(seconds=verdict.retry_in_s)
        if update.callback_query is not None:
            await ack(update, context, text, alert=True)
        elif update.effective_chat is not None:
            await say(update, context, text)
    elif update.callback_query is not None:
        await ack(update, context)
    raise ApplicationHandlerStop


async def _leave_dialog(update: Update, context: Context) -> int:
    """Another command typed mid-question: leave the question; group 1 handles the command."""
    if context.user_data is not None:
        context.user_data.pop("draft", None)
    return ConversationHandler.END


async def _off_topic(update: Update, context: Context) -> None:
    await say(update, context, start_view.OFF_TOPIC)


async def set_commands(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """The command menu: the public commands for everyone, plus the admin ones for admins."""
    public = [BotCommand(name, about) for name, about in start_view.COMMANDS]
    await app.bot.set_my_commands(public)
    admin = public + [BotCommand(name, about) for name, about in start_view.ADMIN_COMMANDS]
    for admin_id in sorted(app.bot_data["vanta_deps"].admins):
        try:
            await app.bot.set_my_commands(admin, scope=BotCommandScopeChat(admin_id))
        except TelegramError as exc:  # the admin has not opened a chat with the bot yet
            log.info("admin commands not set", extra=log_fields(admin=admin_id, error=str(exc)))


def _flows() -> list[Any]:
    from bot.flows import admin, alfa, alpha, copytrader, follow, settings, start, status

    return [start, copytrader, alfa, follow, status, alpha, settings, admin]


def register(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    from bot.flows import start

    flows = _flows()
    entries: list[BaseHandler] = []
    states: dict[object, list[BaseHandler]] = {}
    for flow in flows:
        entries += getattr(flow, "DIALOG_ENTRIES", [])
        states.update(getattr(flow, "DIALOG_STATES", {}))
    with warnings.catch_warnings():
        # Buttons in the dialog are tracked per user, not per message: intended (see the docstring).
        warnings.filterwarnings("ignore", message=".*per_message=False.*", category=PTBUserWarning)
        dialog = ConversationHandler(
            entry_points=entries,
            states=states,
            fallbacks=[
                CommandHandler("cancel", dialog_step(start.cancel)),
                MessageHandler(filters.COMMAND, _leave_dialog),
                MessageHandler(filters.ALL, dialog_step(_off_topic)),
            ],
            name=DIALOG,
            persistent=True,
            allow_reentry=True,
        )
    app.add_handler(TypeHandler(Update, _gate), group=-1)
    app.add_handler(dialog, group=0)
    for flow in flows:
        for handler in getattr(flow, "HANDLERS", []):
            app.add_handler(handler, group=1)
    for handler in start.LAST_HANDLERS:
        app.add_handler(handler, group=1)
    app.add_handler(CallbackQueryHandler(start.expired_button), group=2)
    app.add_error_handler(on_error)


def build_application(
    bot_deps: BotDeps,
    pool: asyncpg.Pool,
    *,
    token: str,
    base_url: str,
    request: BaseRequest | None = None,
    updates_request: BaseRequest | None = None,
) -> Application[Any, Any, Any, Any, Any, Any]:
    """The bot, ready for `async with app:`; `request`s replace HTTP (the console transport)."""
    processor = SavingUpdateProcessor()
    builder = (
        ApplicationBuilder()
        .token(token)
        .base_url(base_url)
        .persistence(PostgresPersistence(pool))
        .concurrent_updates(processor)
    )
    if request is not None:
        builder = builder.request(request).get_updates_request(updates_request or request)
    else:
        builder = builder.connection_pool_size(128).pool_timeout(10.0)
    app = builder.build()
    processor.application = app
    install(app.bot_data, bot_deps)
    register(app)
    return app
