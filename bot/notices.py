"""Notices from the outbox as the user reads them, and what happens when a user blocked the bot."""

from __future__ import annotations

from bot.delivery import OnBlocked, Render
from bot.deps import BotDeps
from bot.outbox import Notice
from bot.views.common import esc


def renderer(deps: BotDeps) -> Render:
    async def render(notice: Notice) -> str | None:
        return esc(notice.text)

    return render


def blocked_handler(deps: BotDeps) -> OnBlocked:
    async def on_blocked(telegram_user_id: int) -> None:
        return None

    return on_blocked
