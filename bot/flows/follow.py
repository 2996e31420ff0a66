"""Following and the profile switches: /follow (and the Follow button of a trader's card),
/unfollow, /pause, /resume, /stop. All through the copy service, as the user (`Actor.user`): a
user can only pick their own profiles and follows; a forged button naming someone else's gets
"no such profile".

Callback data: `fw:l:<leader>` (Follow pressed), `fw:p:<profile>:<leader>` (profile picked),
`fw:y:<profile>:<leader>` (confirmed), `fw:n`; `uf:<follow>`, `uy:<follow>`, `uf:n`; `pz:<profile>`;
`rs:<profile>`; `sp:<profile>`, `sy:<profile>`, `sp:n`.
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

from bot import inputs, owned
from bot.delegation import is_registered
from bot.deps import deps
from bot.dialog import dialog_step
from bot.replies import Context, ack, say, show, user_id
from bot.views import follow as view
from bot.views.common import esc
from bot.views.copytrader import follow_input_kwargs
from execution.copy.service import Actor, CopyError, FollowInput, ProfileInput
from infra.logs import log_fields

log = logging.getLogger("vanta.bot.follow")
ADDRESS = "fw.address"
_ADDR = r"0x[0-9a-fA-F]{40}"


def _actor(update: Update) -> Actor:
    return Actor.user(user_id(update))


async def _profiles(update: Update, context: Context) -> list[Any]:
    return await deps(context).service.profiles(_actor(update))


async def _profile(update: Update, context: Context, profile_id: int) -> Any:
    return await owned.own_profile(deps(context), user_id(update), profile_id)


def _data(update: Update) -> list[str]:
    assert update.callback_query is not None and update.callback_query.data is not None
    return update.callback_query.data.split(":")


# --- following --------------------------------------------------------------------------------


async def follow_command(update: Update, context: Context) -> object:
    """/follow 0x… picks a profile; /follow alone asks for the address."""
    if context.args:
        try:
            leader = inputs.address(context.args[0])
        except inputs.InputError as err:
            await say(update, context, esc(str(err)))
            return ConversationHandler.END
        await _pick(update, context, leader)
        return ConversationHandler.END
    await say(update, context, view.ASK_ADDRESS)
    return ADDRESS


async def typed_address(update: Update, context: Context) -> object:
    text = update.effective_message.text if update.effective_message else ""
    try:
        leader = inputs.address(text or "")
    except inputs.InputError as err:
        await say(update, context, view.or_cancel(str(err)))
        return ADDRESS
    await _pick(update, context, leader)
    return ConversationHandler.END


async def not_an_address(update: Update, context: Context) -> object:
    await say(update, context, view.ADDRESS_AS_TEXT)
    return ADDRESS


async def follow_button(update: Update, context: Context) -> None:
    await ack(update, context)
    await _pick(update, context, inputs.address(_data(update)[2]))


async def _pick(update: Update, context: Context, leader: str) -> None:
    profiles = await _profiles(update, context)
    if not profiles:
        await say(update, context, view.NO_PROFILE, view.no_profile_keyboard())
    elif len(profiles) == 1:
        await _confirm(update, context, profiles[0], leader)
    else:
        text, keyboard = view.pick_profile(leader, profiles)
        await say(update, context, text, keyboard)


async def picked(update: Update, context: Context) -> None:
    _, _, pid, leader = _data(update)
    await ack(update, context)
    await _confirm(update, context, await _profile(update, context, int(pid)), inputs.address(leader))


async def _copy(update: Update, context: Context, profile: Any) -> dict[str, Any] | None:
    return await owned.copy_settings(deps(context), profile)


async def _confirm(update: Update, context: Context, profile: Any, leader: str) -> None:
    copy = await _copy(update, context, profile)
    if copy is None:
        await show(update, context, view.NO_COPY_SETTINGS.format(name=esc(profile.name)))
        return
    await show(
        update,
        context,
        view.confirm(leader, profile, copy, deps(context).catalogue),
        view.confirm_keyboard(profile.id, leader),
    )


async def confirmed(update: Update, context: Context) -> None:
    _, _, pid, leader = _data(update)
    profile = await _profile(update, context, int(pid))
    copy = await _copy(update, context, profile)
    if copy is None:
        await show(update, context, view.NO_COPY_SETTINGS.format(name=esc(profile.name)))
        return
    await deps(context).service.follow(
        _actor(update),
        inputs.address(leader),
        FollowInput(**follow_input_kwargs(copy)),
        ProfileInput(name=profile.name, venue=profile.venue),
    )
    await ack(update, context, "Following")
    await show(update, context, view.followed(leader, profile))


async def cancelled(update: Update, context: Context) -> None:
    await show(update, context, view.CANCELLED)


# --- unfollowing ------------------------------------------------------------------------------


async def unfollow(update: Update, context: Context) -> None:
    follows = await deps(context).service.follows(_actor(update))
    text, keyboard = view.follows_list(follows)
    await show(update, context, text, keyboard)


async def _own_follow(update: Update, context: Context, follow_id: int) -> Any:
    for f in await deps(context).service.follows(_actor(update)):
        if f.id == follow_id:
            return f
    raise CopyError(f"no live follow {follow_id}", "follow")


async def unfollow_picked(update: Update, context: Context) -> None:
    f = await _own_follow(update, context, int(_data(update)[1]))
    await show(update, context, view.unfollow_confirm(f), view.unfollow_keyboard(f.id))


async def unfollow_confirmed(update: Update, context: Context) -> None:
    f = await _own_follow(update, context, int(_data(update)[1]))
    await deps(context).service.unfollow(_actor(update), f.id)
    await ack(update, context, "Stopped")
    await show(update, context, view.unfollowed(f))


async def left_as_is(update: Update, context: Context) -> None:
    await show(update, context, view.LEFT_AS_IS)


# --- pause, resume, stop ----------------------------------------------------------------------


async def pause(update: Update, context: Context) -> None:
    active = [p for p in await _profiles(update, context) if p.status == "active"]
    if not active:
        await say(update, context, view.nothing_to("pause"))
    elif len(active) == 1:
        await _pause(update, context, active[0].id)
    else:
        await say(update, context, *view.choose_profile("Pause", "pz", active))


async def pause_picked(update: Update, context: Context) -> None:
    await _pause(update, context, int(_data(update)[1]))


async def _pause(update: Update, context: Context, profile_id: int) -> None:
    profile = await deps(context).service.pause(_actor(update), profile_id)
    await show(update, context, view.paused(profile))


async def resume(update: Update, context: Context) -> None:
    idle = [p for p in await _profiles(update, context) if p.status != "active"]
    if not idle:
        await say(update, context, view.nothing_to("resume") + " Everything is already copying.")
    elif len(idle) == 1:
        await _resume(update, context, idle[0])
    else:
        await say(update, context, *view.choose_profile("Resume", "rs", idle))


async def resume_picked(update: Update, context: Context) -> None:
    await _resume(update, context, await _profile(update, context, int(_data(update)[1])))


async def _resume(update: Update, context: Context, profile: Any) -> None:
    """A real-money profile resumes only once the chain shows our delegate for its wallet."""
    d = deps(context)
    if profile.venue != "paper":
        if d.delegate_address is None or d.chain is None or profile.wallet is None:
            await show(update, context, view.DELEGATE_UNCHECKED)
            return
        try:
            ok = await is_registered(d.chain, d.trading_address, profile.wallet, d.delegate_address)
        except Exception as exc:  # unreachable chain: not resumed on a guess
            log.warning("delegate check failed", extra=log_fields(error=str(exc)[:200]))
            await show(update, context, view.DELEGATE_UNCHECKED)
            return
        if not ok:
            text = view.DELEGATE_NEEDED.format(
                name=esc(profile.name), delegate=d.delegate_address, wallet=profile.wallet
            )
            await show(update, context, text)
            return
    resumed = await d.service.resume(_actor(update), profile.id)
    await show(update, context, view.resumed(resumed))


async def stop(update: Update, context: Context) -> None:
    live = [p for p in await _profiles(update, context) if p.status != "stopped"]
    if not live:
        await say(update, context, view.nothing_to("stop"))
    elif len(live) == 1:
        await say(update, context, view.stop_confirm(live[0]), view.stop_keyboard(live[0].id))
    else:
        await say(update, context, *view.choose_profile("Stop", "sp", live))


async def stop_picked(update: Update, context: Context) -> None:
    profile = await _profile(update, context, int(_data(update)[1]))
    await show(update, context, view.stop_confirm(profile), view.stop_keyboard(profile.id))


async def stop_confirmed(update: Update, context: Context) -> None:
    profile = await deps(context).service.stop(_actor(update), int(_data(update)[1]))
    await ack(update, context, "Stopped")
    await show(update, context, view.stopped(profile))


DIALOG_ENTRIES: list[BaseHandler] = [CommandHandler("follow", dialog_step(follow_command))]
DIALOG_STATES: dict[object, list[BaseHandler]] = {
    ADDRESS: [
        MessageHandler(filters.TEXT & ~filters.COMMAND, dialog_step(typed_address)),
        MessageHandler(~filters.COMMAND, dialog_step(not_an_address)),
    ],
}
HANDLERS: list[BaseHandler] = [
    CallbackQueryHandler(follow_button, pattern=rf"^fw:l:{_ADDR}$"),
    CallbackQueryHandler(picked, pattern=rf"^fw:p:\d+:{_ADDR}$"),
    CallbackQueryHandler(confirmed, pattern=rf"^fw:y:\d+:{_ADDR}$"),
    CallbackQueryHandler(cancelled, pattern=r"^fw:n$"),
    CommandHandler("unfollow", unfollow),
    CallbackQueryHandler(unfollow_picked, pattern=r"^uf:\d+$"),
    CallbackQueryHandler(unfollow_confirmed, pattern=r"^uy:\d+$"),
    CallbackQueryHandler(left_as_is, pattern=r"^(uf|pz|rs|sp):n$"),
    CommandHandler("pause", pause),
    CallbackQueryHandler(pause_picked, pattern=r"^pz:\d+$"),
    CommandHandler("resume", resume),
    CallbackQueryHandler(resume_picked, pattern=r"^rs:\d+$"),
    CommandHandler("stop", stop),
    CallbackQueryHandler(stop_picked, pattern=r"^sp:\d+$"),
    CallbackQueryHandler(stop_confirmed, pattern=r"^sy:\d+$"),
]
