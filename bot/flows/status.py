"""/status: for each of the user's profiles, its follows, copy PnL per leader (realized,
unrealized at the latest prices, fees, slippage paid against the leader's fills), the recent
copies and refusals with their reasons in words, and a chart of its copy PnL."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler

from bot import charts
from bot.deps import deps
from bot.replies import Context, photo, say, user_id
from bot.views import status as view
from bot.views.common import esc
from execution.copy.service import Actor

MAX_PROFILES = 5  # more than this many profiles: the first ones, and a word about the rest


async def status(update: Update, context: Context) -> None:
    d = deps(context)
    actor = Actor.user(user_id(update))
    profiles = await d.service.profiles(actor)
    if not profiles:
        await say(update, context, view.NO_PROFILES)
        return
    marks = await d.service.marks()
    for profile in profiles[:MAX_PROFILES]:
        follows = await d.service.follows(actor, profile.id)
        report = await d.service.copies(actor, profile.id, marks)
        recent = await d.service.recent(actor, profile.id, limit=200)
        text = view.profile_status(profile, follows, report, recent)
        points = view.equity_points(recent, report)
        if points:
            png = await charts.render(charts.equity_png, points, title=f"{profile.name}: copy PnL (USDC)")
            if len(text) <= 1000:
                await photo(update, context, png, text)
                continue
            await photo(update, context, png, f"📈 <b>{esc(profile.name)}</b>: copy PnL")
        await say(update, context, text)
    if len(profiles) > MAX_PROFILES:
        await say(update, context, view.more_profiles(len(profiles) - MAX_PROFILES))


HANDLERS: list[BaseHandler] = [CommandHandler("status", status)]
