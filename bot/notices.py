"""Notices from the outbox as the user reads them (HTML), the user's level applied, and what
happens when a user has blocked the bot.

The engine stores each notice as a kind and its fields; its `render` words them for the CLI. The
bot words refusals and pauses itself (the reason in a sentence, what to do next) and the kinds
only it writes (`delivery_gap`); anything else is the engine's sentence, escaped. A kind nobody
knows is still delivered, as its fields, rather than dropped.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from bot import preferences
from bot.delivery import OnBlocked, Render
from bot.deps import BotDeps
from bot.outbox import DELIVERY_GAP, Notice
from bot.views.common import esc, short
from bot.views.reasons import in_words
from data.units import format_usdc
from execution.copy import render as engine_render
from execution.copy.service import Actor

ICONS = {
    "fill": "✅",
    "refused": "⛔",
    "rejected": "❌",
    "paused": "⏸",
    "drift": "⚠️",
    "failed": "🚨",
    "unmatched_close": "⚠️",
    DELIVERY_GAP: "⚠️",
    "admin_alert": "🛠",
}


def exact(value: Any) -> str:
    """A decimal string (price, leverage) as people write it: 60,000.5 and 10, never 6E+4."""
    try:
        d = Decimal(str(value)).normalize()
    except (InvalidOperation, ValueError):
        return esc(value)
    return f"{d:,f}"


def _fill(f: dict[str, Any]) -> str:
    leader = f"<code>{esc(short(str(f.get('leader', '?'))))}</code>"
    pair = esc(f.get("pair", "?"))
    action = f.get("action")
    if action == "open":
        return (
            f"✅ <b>Copied</b> {leader}: <b>{esc(str(f.get('side', '')).upper())} {pair}</b>, "
            f"{format_usdc(int(f['collateral_usdc']))} USDC margin × {exact(f.get('leverage'))} "
            f"at {exact(f.get('price'))}"
        )
    if action == "update_tp_sl":
        return f"✅ Take-profit and stop-loss of your {pair} copy moved like {leader}'s"
    part = "all" if f.get("closed_all") else "part"
    pnl = int(f.get("pnl_usdc") or 0)
    return f"✅ <b>Closed</b> {part} of your {pair} copy of {leader}: <b>{format_usdc(pnl, signed=True)} USDC</b>"


def text_of(kind: str, fields: dict[str, Any]) -> str:
    """One notice as one HTML message."""
    icon = ICONS.get(kind, "ℹ️")
    if kind == "fill":
        return _fill(fields)
    if kind == "refused":
        pair = f" on {esc(fields['pair'])}" if fields.get("pair") else ""
        return f"{icon} Copy of <code>{esc(short(str(fields.get('leader', '?'))))}</code>{pair} not placed: {esc(in_words(fields.get('reason')))}."
    if kind == "paused":
        return (
            f"{icon} <b>Copying paused</b>: {esc(in_words(fields.get('reason')))}. Open copies are still closed "
            "when their leader closes. /status shows where you stand; /resume starts copying again."
        )
    if kind == DELIVERY_GAP:
        lost = fields.get("lost") or []
        first = text_of(lost[0]["kind"], lost[0]["fields"]) if lost else "an alert"
        more = int(fields.get("count", 1)) - 1
        return (
            f"{icon} Vanta restarted while sending you this alert, so it may not have reached you:\n{first}"
            + (f"\n(and {more} more)" if more > 0 else "")
            + "\n/status shows your copies as they stand."
        )
    if kind == "admin_alert":
        return f"{icon} {esc(fields.get('text') or fields.get('message') or fields)}"
    try:
        return f"{icon} {esc(engine_render.render(kind, fields))}"
    except (KeyError, ValueError, TypeError):
        shown = ", ".join(f"{esc(k)}: {esc(v)}" for k, v in sorted(fields.items()) if k != "intent_id")
        return f"{icon} {esc(kind.replace('_', ' '))}: {shown}"


def renderer(deps: BotDeps) -> Render:
    async def render(notice: Notice) -> str | None:
        if not preferences.wanted(notice.level, notice.notify_level):
            return None
        return text_of(notice.kind, notice.fields)

    return render


def blocked_handler(deps: BotDeps) -> OnBlocked:
    """A user who blocked the bot can't be warned about anything: their copying is paused."""

    async def on_blocked(telegram_user_id: int) -> None:
        actor = Actor.user(telegram_user_id)
        for profile in await deps.service.profiles(actor):
            if profile.status == "active":
                await deps.service.pause(actor, profile.id)

    return on_blocked
