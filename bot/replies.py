"""How handlers talk back: the few ways a flow answers, so every flow answers the same way.

- `show`: a screen. Pressed from a button, it replaces the message that carried the button
  (pagination edits in place); typed, it is a new message.
- `say`: a new message in the chat.
- `photo`: a chart with its caption.
- `ack`: answers a button press once (the spinner stops); a final handler answers any press
  nobody answered, so a stale button never spins forever.

Texts are HTML (Telegram's parse mode): views escape whatever they did not write themselves.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import ContextTypes

Keyboard = list[list[tuple[str, str]]]  # rows of (label, callback data)
Context = ContextTypes.DEFAULT_TYPE
_ANSWERED = "answered_queries"


def markup(keyboard: Keyboard | None) -> InlineKeyboardMarkup | None:
    if not keyboard:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data) for label, data in row] for row in keyboard if row]
    )


def _answered(context: Context) -> deque[str]:
    return context.application.bot_data.setdefault(_ANSWERED, deque(maxlen=2048))


async def ack(update: Update, context: Context, text: str | None = None, *, alert: bool = False) -> None:
    query = update.callback_query
    if query is None or query.id in _answered(context):
        return
    _answered(context).append(query.id)
    await query.answer(text, show_alert=alert)


def was_answered(update: Update, context: Context) -> bool:
    return update.callback_query is not None and update.callback_query.id in _answered(context)


def chat_id(update: Update) -> int:
    assert update.effective_chat is not None
    return update.effective_chat.id


async def say(update: Update, context: Context, text: str, keyboard: Keyboard | None = None) -> Message:
    return await context.bot.send_message(
        chat_id(update), text, parse_mode=ParseMode.HTML, reply_markup=markup(keyboard)
    )


async def show(
    update: Update, context: Context, text: str, keyboard: Keyboard | None = None
) -> Message | Any:
    """Replace the pressed message's text (when it has text), else send a new message."""
    query = update.callback_query
    if query is not None:
        await ack(update, context)
        msg = query.message
        if isinstance(msg, Message) and msg.text is not None:
            try:
                return await query.edit_message_text(
                    text, parse_mode=ParseMode.HTML, reply_markup=markup(keyboard)
                )
            except BadRequest as exc:
                if "not modified" in exc.message:
                    return msg  # the same page pressed twice: nothing to change
                raise
    return await say(update, context, text, keyboard)


async def photo(
    update: Update, context: Context, png: bytes, caption: str, keyboard: Keyboard | None = None
) -> Message:
    await ack(update, context)
    return await context.bot.send_photo(
        chat_id(update),
        InputFile(png, filename="chart.png"),
        caption=caption,
        parse_mode=ParseMode.HTML,
        reply_markup=markup(keyboard),
    )


def user_id(update: Update) -> int:
    assert update.effective_user is not None
    return update.effective_user.id
