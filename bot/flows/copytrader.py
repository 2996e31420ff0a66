"""/copytrader: create, edit and delete copy profiles, one question at a time, then a summary to
confirm. Typed answers are read by `bot.inputs` (a friendly sentence when they don't fit, and the
same question again); everything is saved through the copy service, which checks it again and
owns the SQL. The draft lives in `user_data` (PostgreSQL): a restart mid-way loses nothing.

Callback data: `ct:` + new | e:<profile> | d:<profile> | dy:<profile> | menu | v:<choice> | v:none
| save | fields | f:<field> | sum | chk | later | cancel.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import Update
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot import inputs, owned, preferences
from bot.delegation import is_registered
from bot.deps import deps
from bot.dialog import dialog_step
from bot.replies import Context, ack, say, show, user_id
from bot.views import copytrader as view
from bot.views.common import esc
from bot.views.copytrader import BY_KEY, FIELDS, Draft, Field
from execution.copy.inputs import follow_config
from execution.copy.service import Actor, FollowInput, ProfileInput
from infra.logs import log_fields

log = logging.getLogger("vanta.bot.copytrader")

MENU, ASK, SUMMARY, FIELD_PICK, DELEGATE, DELETE = (
    "ct.menu",
    "ct.ask",
    "ct.summary",
    "ct.field_pick",
    "ct.delegate",
    "ct.delete",
)
END = ConversationHandler.END


def _draft(context: Context) -> Draft:
    assert context.user_data is not None
    return context.user_data.setdefault("draft", {})


def _values(context: Context) -> dict[str, Any]:
    return _draft(context).setdefault("values", {})


# --- entry and menu ---------------------------------------------------------------------------


async def menu(update: Update, context: Context) -> str:
    if context.user_data is not None:
        context.user_data.pop("draft", None)
    d = deps(context)
    profiles = await d.service.profiles(Actor.user(user_id(update)))
    copies = {p.id: await preferences.copy_settings(d.pool, p.id) for p in profiles}
    text, keyboard = view.menu(profiles, copies)
    await show(update, context, text, keyboard)
    return MENU


async def new_profile(update: Update, context: Context) -> str:
    assert context.user_data is not None
    context.user_data["draft"] = {"mode": "create", "values": dict(view.DEFAULTS), "answered": []}
    await ack(update, context)
    return await _ask(update, context, BY_KEY["name"])


async def edit_profile(update: Update, context: Context) -> str:
    assert update.callback_query is not None and context.user_data is not None
    profile = await _own_profile(update, context, int(update.callback_query.data.split(":")[2]))
    copy = await _copy_settings(context, profile)
    values = view.values_of(profile, copy)
    # A profile made outside the bot may have no copy settings yet: those are asked first.
    unanswered = set() if copy is not None else set(view.COPY_KEYS) - set(view.DEFAULTS)
    context.user_data["draft"] = {
        "mode": "edit",
        "profile_id": profile.id,
        "before": values,
        "values": dict(values),
        "answered": [f.key for f in FIELDS if f.key not in unanswered],
    }
    return await _next(update, context)


async def _own_profile(update: Update, context: Context, profile_id: int) -> Any:
    return await owned.own_profile(deps(context), user_id(update), profile_id)


async def _copy_settings(context: Context, profile: Any) -> dict[str, Any] | None:
    return await owned.copy_settings(deps(context), profile)


async def delete_profile(update: Update, context: Context) -> str:
    assert update.callback_query is not None
    profile = await _own_profile(update, context, int(update.callback_query.data.split(":")[2]))
    await show(update, context, view.delete_confirm(profile.name), view.delete_keyboard(profile.id))
    return DELETE


async def delete_confirmed(update: Update, context: Context) -> str:
    assert update.callback_query is not None
    profile = await _own_profile(update, context, int(update.callback_query.data.split(":")[2]))
    await deps(context).service.delete_profile(Actor.user(user_id(update)), profile.id)
    await ack(update, context, f"Profile {profile.name} deleted")
    return await menu(update, context)


# --- asking fields ----------------------------------------------------------------------------


def _applicable(values: dict[str, Any]) -> list[Field]:
    return [f for f in FIELDS if f.applies(values)]


async def _ask(update: Update, context: Context, f: Field) -> str:
    d = _draft(context)
    d["asking"] = f.key
    fields = _applicable(d["values"])
    step = next((i for i, g in enumerate(fields, 1) if g.key == f.key), len(fields))
    text = view.prompt_for(f, d["values"], deps(context).delegate_address, step, len(fields))
    current = d["values"].get(f.key)
    if f.key in d.get("answered", []) and current is not None and f.parse is not None:
        text += f"\n<i>Now: {view.shown(f, d['values'], deps(context).catalogue)}</i>"
    await show(update, context, text, view.field_keyboard(f))
    return ASK


async def _next(update: Update, context: Context) -> str:
    """The next question not answered yet, or the summary."""
    d = _draft(context)
    answered = set(d.get("answered", []))
    for f in _applicable(d["values"]):
        if f.key not in answered:
            return await _ask(update, context, f)
    return await _summary(update, context)


async def _store(update: Update, context: Context, f: Field, value: Any) -> str:
    d = _draft(context)
    if f.key == "venue" and value != "paper" and deps(context).delegate_address is None:
        await say(update, context, view.wallet_prompt(None, value))
        return await _ask(update, context, f)
    d["values"][f.key] = value
    if f.key not in d.setdefault("answered", []):
        d["answered"].append(f.key)
    if f.key == "sizing_mode" and "amount" in d["answered"]:
        d["answered"].remove("amount")  # the amount means something else under another mode
        d["values"].pop("amount", None)
    if f.key == "wallet":
        return await _check_delegate(update, context)
    return await _next(update, context)


async def typed_answer(update: Update, context: Context) -> str:
    d = _draft(context)
    f = BY_KEY.get(d.get("asking", ""))
    text = update.effective_message.text if update.effective_message else None
    if f is None:
        return await menu(update, context)
    if f.parse is None and f.key != "amount":
        await say(update, context, view.BUTTONS_ONLY)
        return ASK
    if not text:
        await say(update, context, view.TEXT_PLEASE)
        return ASK
    try:
        if f.key == "amount":
            value = view.parse_amount(text, d["values"].get("sizing_mode"))
        else:
            assert f.parse is not None
            value = f.parse(text, deps(context).catalogue)
    except inputs.InputError as err:
        await say(update, context, view.try_again(str(err), f))
        return ASK
    return await _store(update, context, f, value)


async def chosen(update: Update, context: Context) -> str:
    assert update.callback_query is not None
    d = _draft(context)
    f = BY_KEY.get(d.get("asking", ""))
    if f is None:
        await ack(update, context, view.EXPIRED)
        return await menu(update, context)
    choice = update.callback_query.data.split(":")[2]
    if choice == "none" and f.none_label:
        value = [] if f.key == "pair_block" else None
    elif choice.isdigit() and int(choice) < len(f.choices):
        value = f.choices[int(choice)][1]
    else:
        await ack(update, context, view.EXPIRED)
        return ASK
    await ack(update, context)
    return await _store(update, context, f, value)


async def sticker_or_photo(update: Update, context: Context) -> str:
    await say(update, context, view.TEXT_PLEASE)
    return ASK


# --- delegate registration --------------------------------------------------------------------


async def _check_delegate(update: Update, context: Context) -> str:
    values = _values(context)
    d = deps(context)
    if d.chain is None or d.delegate_address is None:
        registered = False
    else:
        try:
            registered = await is_registered(d.chain, d.trading_address, values["wallet"], d.delegate_address)
        except Exception as exc:  # the chain is unreachable: say so, don't guess either way
            log.warning("delegate check failed", extra=log_fields(error=str(exc)[:200]))
            await show(update, context, view.DELEGATE_UNCHECKED, view.delegate_keyboard())
            return DELEGATE
    values["delegate_ok"] = bool(registered)
    if registered:
        await say(update, context, view.DELEGATE_OK.format(wallet=values["wallet"]))
        return await _next(update, context)
    await show(
        update,
        context,
        view.DELEGATE_MISSING.format(wallet=values["wallet"], delegate=d.delegate_address),
        view.delegate_keyboard(),
    )
    return DELEGATE


async def check_again(update: Update, context: Context) -> str:
    await ack(update, context, view.CHECKING)
    return await _check_delegate(update, context)


async def enable_later(update: Update, context: Context) -> str:
    await ack(update, context, view.SAVED_FOR_LATER)
    return await _next(update, context)


# --- summary ----------------------------------------------------------------------------------


async def _summary(update: Update, context: Context) -> str:
    d = _draft(context)
    d.pop("asking", None)
    text = view.summary(d["values"], deps(context).catalogue, editing=d.get("mode") == "edit")
    await show(update, context, text, view.summary_keyboard())
    return SUMMARY


async def back_to_summary(update: Update, context: Context) -> str:
    return await _summary(update, context)


async def pick_field(update: Update, context: Context) -> str:
    d = _draft(context)
    keyboard = view.fields_keyboard(d["values"], editing=d.get("mode") == "edit")
    await show(update, context, view.WHICH_FIELD, keyboard)
    return FIELD_PICK


async def change_field(update: Update, context: Context) -> str:
    assert update.callback_query is not None
    f = BY_KEY.get(update.callback_query.data.split(":")[2])
    if f is None:
        await ack(update, context, view.EXPIRED)
        return FIELD_PICK
    d = _draft(context)
    if f.key in d.get("answered", []):
        d["answered"].remove(f.key)
    return await _ask(update, context, f)


async def save(update: Update, context: Context) -> Any:
    d = _draft(context)
    deps_ = deps(context)
    actor = Actor.user(user_id(update))
    values = d["values"]
    copy = view.copy_settings(values)
    if d.get("mode") == "edit":
        try:
            changes = view.profile_changes(d.get("before", {}), values)
        except ValueError as err:
            await say(update, context, esc(str(err)))
            return SUMMARY
        profile = await deps_.service.update_profile(actor, d["profile_id"], **changes)
        # Every follow of the profile takes the new copy settings (checked by the service first).
        for f in await deps_.service.follows(actor, profile.id):
            await deps_.service.edit_follow(actor, f.id, FollowInput(**view.follow_input_kwargs(copy)))
        text = view.SAVED_EDIT.format(name=esc(profile.name))
    else:
        follow_config(FollowInput(**view.follow_input_kwargs(copy)))  # refused now, not at the first follow
        profile = await deps_.service.create_profile(actor, ProfileInput(**view.profile_input_kwargs(values)))
        text = view.SAVED_NEW.format(name=esc(profile.name))
        if values.get("venue") != "paper" and not values.get("delegate_ok"):
            await deps_.service.pause(actor, profile.id)
            text += "\n" + view.PAUSED_UNTIL_DELEGATE
    await preferences.set_copy_settings(deps_.pool, profile.id, actor.telegram_user_id or 0, copy)
    if context.user_data is not None:
        context.user_data.pop("draft", None)
    await show(update, context, text)
    return END


async def cancel_button(update: Update, context: Context) -> int:
    if context.user_data is not None:
        context.user_data.pop("draft", None)
    await show(update, context, view.CANCELLED)
    return END


def _cb(pattern: str, fn: Any) -> CallbackQueryHandler:
    return CallbackQueryHandler(dialog_step(fn), pattern=pattern)


_TEXT = filters.TEXT & ~filters.COMMAND
_CANCEL = _cb(r"^ct:cancel$", cancel_button)

DIALOG_ENTRIES: list[BaseHandler] = [
    CommandHandler("copytrader", dialog_step(menu)),
    _cb(r"^st:ct$", menu),
]
DIALOG_STATES: dict[object, list[BaseHandler]] = {
    MENU: [
        _cb(r"^ct:new$", new_profile),
        _cb(r"^ct:e:\d+$", edit_profile),
        _cb(r"^ct:d:\d+$", delete_profile),
        _CANCEL,
        MessageHandler(_TEXT, dialog_step(lambda u, c: _buttons_only(u, c, MENU))),
    ],
    ASK: [
        _cb(r"^ct:v:(\d+|none)$", chosen),
        _CANCEL,
        MessageHandler(_TEXT, dialog_step(typed_answer)),
        MessageHandler(~filters.COMMAND, dialog_step(sticker_or_photo)),
    ],
    DELEGATE: [
        _cb(r"^ct:chk$", check_again),
        _cb(r"^ct:later$", enable_later),
        _CANCEL,
        MessageHandler(_TEXT, dialog_step(lambda u, c: _buttons_only(u, c, DELEGATE))),
    ],
    SUMMARY: [
        _cb(r"^ct:save$", save),
        _cb(r"^ct:fields$", pick_field),
        _CANCEL,
        MessageHandler(_TEXT, dialog_step(lambda u, c: _buttons_only(u, c, SUMMARY))),
    ],
    FIELD_PICK: [
        _cb(r"^ct:f:\w+$", change_field),
        _cb(r"^ct:sum$", back_to_summary),
        _CANCEL,
        MessageHandler(_TEXT, dialog_step(lambda u, c: _buttons_only(u, c, FIELD_PICK))),
    ],
    DELETE: [
        _cb(r"^ct:dy:\d+$", delete_confirmed),
        _cb(r"^ct:menu$", menu),
        MessageHandler(_TEXT, dialog_step(lambda u, c: _buttons_only(u, c, DELETE))),
    ],
}


async def _buttons_only(update: Update, context: Context, state: str) -> str:
    await say(update, context, view.BUTTONS_ONLY)
    return state
