"""/alfa: the AI leaderboard (10 a page, sortable, pages turned by editing the message) and a
trader's card (an equity chart, stats, skill evidence, flags, the 7-day forecast, a Follow button).
Everything comes from the serving client; when it cannot answer, the user is told so plainly.

Callback data: `al:p:<page>:<sort>` (a page), `al:t:<address>` (a card).
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot import charts, inputs
from bot.deps import deps
from bot.replies import Context, ack, photo, say, show
from bot.views import alfa as view
from bot.views.common import esc, short
from serving.client import Unknown
from serving.schemas import LeaderboardSort

_SORTS: tuple[LeaderboardSort, ...] = ("score", "pnl", "psr")


async def alfa(update: Update, context: Context) -> None:
    """/alfa, /alfa 2 (a page), /alfa pnl (a sort), /alfa 0x… (a trader's card)."""
    args = context.args or []
    if args and args[0].lower().startswith("0x"):
        try:
            trader = inputs.address(args[0])
        except inputs.InputError as err:
            await say(update, context, esc(str(err)))
            return
        await _card(update, context, trader)
        return
    page, sort = 1, "score"
    for arg in args:
        if arg.isdigit() and 0 < int(arg) < 10_000:
            page = int(arg)
        elif arg.lower() in _SORTS:
            sort = arg.lower()
        else:
            await say(update, context, view.USAGE)
            return
    await _page(update, context, page, sort)  # type: ignore[arg-type]


async def page_button(update: Update, context: Context) -> None:
    assert update.callback_query is not None and update.callback_query.data is not None
    _, _, page, sort = update.callback_query.data.split(":")
    await _page(update, context, max(1, int(page)), sort if sort in _SORTS else "score")  # type: ignore[arg-type]


async def _page(update: Update, context: Context, page: int, sort: LeaderboardSort) -> None:
    answer = await deps(context).market.leaderboard(page=page, page_size=view.PAGE_SIZE, sort=sort)
    if isinstance(answer, Unknown):
        await show(
            update, context, view.UNAVAILABLE.format(reason=esc(answer.reason[:120]), what="the leaderboard")
        )
        return
    await show(update, context, view.leaderboard(answer), view.leaderboard_keyboard(answer))


async def card_button(update: Update, context: Context) -> None:
    assert update.callback_query is not None and update.callback_query.data is not None
    await ack(update, context)
    await _card(update, context, update.callback_query.data.split(":", 2)[2])


async def _card(update: Update, context: Context, trader: str) -> None:
    card = await deps(context).market.trader(trader)
    if isinstance(card, Unknown):
        await say(
            update, context, view.UNAVAILABLE.format(reason=esc(card.reason[:120]), what="this trader's card")
        )
        return
    if card is None:
        await say(update, context, view.UNKNOWN_TRADER.format(trader=esc(trader)))
        return
    png = await charts.render(
        charts.equity_png, view.equity_points(card), title=f"{short(card.trader)}: cumulative realized PnL"
    )
    await photo(update, context, png, view.card_caption(card))
    await say(update, context, view.card(card), view.card_keyboard(card.trader))


HANDLERS: list[BaseHandler] = [
    CommandHandler("alfa", alfa),
    CallbackQueryHandler(page_button, pattern=r"^al:p:\d+:\w+$"),
    CallbackQueryHandler(card_button, pattern=r"^al:t:0x[0-9a-fA-F]{40}$"),
    CallbackQueryHandler(lambda u, c: _page(u, c, 1, "score"), pattern=r"^st:alfa$"),
]
