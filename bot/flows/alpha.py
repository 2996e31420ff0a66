"""/alpha: regime per pair (color, volatility, trend, confidence) with a chart, and the copy
opportunities (leaders with good forecasts in pairs whose regime is not red). From the serving
client; what it cannot answer is said, never filled in."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler

from bot import charts
from bot.deps import deps
from bot.replies import Context, photo, say
from bot.views import alpha as view
from serving.client import Unknown


async def alpha(update: Update, context: Context) -> None:
    market = deps(context).market
    states = await market.regime()
    if isinstance(states, Unknown):
        await say(update, context, view.regimes_unknown(states.reason))
    else:
        png = await charts.render(charts.regime_png, view.chart_points(states))
        text = view.regimes(states)
        fits = len(text) <= 1000  # a caption holds 1,024 characters
        await photo(update, context, png, text if fits else "📈 <b>Market regime by pair</b>")
        if not fits:
            await say(update, context, text)
    found = await market.opportunities(limit=5)
    if isinstance(found, Unknown):
        await say(update, context, view.opportunities_unknown(found.reason))
        return
    await say(update, context, view.opportunities(found), view.opportunities_keyboard(found))


HANDLERS: list[BaseHandler] = [CommandHandler("alpha", alpha)]
