"""/start, /help and /cancel, and the answers to what fits no flow (free text, unknown commands,
stale buttons)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot.deps import deps
from bot.replies import Context, ack, say, user_id, was_answered
from bot.views import start as view


async def start(update: Update, context: Context) -> None:
    name = update.effective_user.first_name if update.effective_user else "there"
    await say(update, context, view.welcome(name), view.start_keyboard())


async def help_command(update: Update, context: Context) -> None:
    await ack(update, context)
    await say(update, context, view.help_text(deps(context).is_admin(user_id(update))))


async def cancel(update: Update, context: Context) -> int:
    context.user_data.pop("draft", None) if context.user_data is not None else None
    await say(update, context, view.CANCELLED)
    return ConversationHandler.END


async def nothing_to_cancel(update: Update, context: Context) -> None:
    await say(update, context, view.NOTHING_TO_CANCEL)


async def not_understood(update: Update, context: Context) -> None:
    await say(update, context, view.NOT_UNDERSTOOD)


async def unknown_command(update: Update, context: Context) -> None:
    text = update.effective_message.text if update.effective_message else ""
    await say(update, context, view.unknown_command((text or "/?").split()[0][:40]))


async def expired_button(update: Update, context: Context) -> None:
    """Runs last for every button press: answers any nobody answered (no endless spinner)."""
    if update.callback_query is not None and not was_answered(update, context):
        await ack(update, context, view.EXPIRED_BUTTON, alert=True)


HANDLERS: list[BaseHandler] = [
    CommandHandler("start", start),
    CommandHandler("help", help_command),
    CallbackQueryHandler(help_command, pattern=r"^st:help$"),
    CommandHandler("cancel", nothing_to_cancel),
]

# After every flow's handlers (see bot.app): what nobody else took.
LAST_HANDLERS: list[BaseHandler] = [
    MessageHandler(filters.COMMAND, unknown_command),
    MessageHandler(filters.ALL & ~filters.COMMAND, not_understood),
]
