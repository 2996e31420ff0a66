"""/status: per profile, who it follows, copy PnL per leader, recent copies and refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bot.notices import exact
from bot.views.common import esc, short
from bot.views.copytrader import STATUS
from bot.views.reasons import in_words
from data.units import format_usdc

NO_PROFILES = "You have no copy profile yet. /copytrader sets one up; /alfa shows traders worth copying."
RECENT = 8


def _usdc(micro: int | None, signed: bool = True) -> str:
    return "unknown" if micro is None else format_usdc(micro, signed=signed)


def _time(at: Any) -> str:
    return at.astimezone(UTC).strftime("%m-%d %H:%M") if isinstance(at, datetime) else "?"


def _recent_line(c: Any) -> str:
    who = f"<code>{esc(short(c.leader))}</code>"
    what = f"{esc(c.action.replace('_', ' '))} {esc(c.pair)}"
    size = "" if c.collateral_usdc is None else f" {format_usdc(c.collateral_usdc)} USDC"
    if c.state in ("filled", "resolved"):
        price = "" if c.fill_price is None else f" at {exact(c.fill_price)}"
        pnl = (
            ""
            if c.pnl_usdc is None or c.action == "open"
            else f", {format_usdc(c.pnl_usdc, signed=True)} USDC"
        )
        return f"{_time(c.at)} ✅ {what}{size}{price}{pnl} · {who}"
    if c.state == "refused":
        return f"{_time(c.at)} ⛔ {what} not placed: {esc(in_words(c.reason))} · {who}"
    if c.state == "rejected":
        return f"{_time(c.at)} ❌ {what} rejected by the venue: {esc(c.reason or '?')} · {who}"
    if c.state == "failed":
        return f"{_time(c.at)} 🚨 {what} could not be completed: {esc(c.reason or '?')} · {who}"
    return f"{_time(c.at)} ⏳ {what}{size} in progress · {who}"


def profile_status(profile: Any, follows: list[Any], report: Any, recent: list[Any]) -> str:
    equity = "unknown" if profile.equity_usdc is None else f"{format_usdc(profile.equity_usdc)} USDC"
    reason = (
        f" ({esc(in_words(profile.pause_reason))})"
        if profile.pause_reason and profile.pause_reason != "by_user"
        else ""
    )
    lines = [
        f"📊 <b>{esc(profile.name)}</b> · {esc(profile.venue)} · {STATUS.get(profile.status, profile.status)}{reason} "
        f"· equity {equity}"
    ]
    if follows:
        lines.append("Following: " + ", ".join(f"<code>{esc(short(f.leader))}</code>" for f in follows))
    else:
        lines.append("Following nobody: /alfa to find a trader.")
    if report.per_leader:
        lines.append("\n<b>Copy PnL per leader</b> (USDC)")
        for r in report.per_leader:
            leader = "your own trades" if r.leader == "manual" else f"<code>{esc(short(r.leader))}</code>"
            unrealized = (
                "unknown (no recent price)" if r.unrealized_pnl_usdc is None else _usdc(r.unrealized_pnl_usdc)
            )
            lines.append(
                f"{leader}: realized {_usdc(r.realized_pnl_usdc)} · unrealized {unrealized} · fees "
                f"{_usdc(r.fees_usdc, signed=False)} · slippage {_usdc(r.slippage_cost_usdc, signed=False)} · "
                f"{r.positions} cop{'y' if r.positions == 1 else 'ies'}, {r.open} open"
            )
    else:
        lines.append("\nNo copies yet.")
    if recent:
        lines.append("\n<b>Recent copies and refusals</b>")
        lines += [f"• {_recent_line(c)}" for c in recent[:RECENT]]
    return "\n".join(lines)


def equity_points(recent: list[Any], report: Any) -> list[tuple[datetime, Decimal]]:
    """Cumulative realized copy PnL at each close (oldest first), then now with open copies marked
    to the latest price when every one of them has a price."""
    closes = sorted(
        (
            c
            for c in recent
            if c.state in ("filled", "resolved") and c.action != "open" and c.pnl_usdc is not None
        ),
        key=lambda c: c.at,
    )
    points: list[tuple[datetime, Decimal]] = []
    total = 0
    if closes:
        points.append((closes[0].at, Decimal(0)))
    for c in closes:
        total += c.pnl_usdc
        points.append((c.at, Decimal(total).scaleb(-6)))
    unrealized = [r.unrealized_pnl_usdc for r in report.per_leader]
    if report.per_leader and all(u is not None for u in unrealized):
        now = datetime.now(UTC)
        if not points:
            first = min((c.at for c in recent), default=now)
            points.append((first, Decimal(0)))
        points.append((now, Decimal(total + sum(u or 0 for u in unrealized)).scaleb(-6)))
    return points


def more_profiles(n: int) -> str:
    return f"…and {n} more profiles (see /copytrader)."
