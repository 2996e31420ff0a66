"""Formatting shared by every screen: escaping, addresses, percentages, dates."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from decimal import Decimal


def esc(value: object) -> str:
    """Anything not written by us, escaped for Telegram's HTML mode."""
    return html.escape(str(value), quote=False)


def short(address: str) -> str:
    """0x1234…abcd: enough to recognize, short enough for a button."""
    return f"{address[:6]}…{address[-4:]}" if len(address) > 12 else address


def pct(value: float | Decimal | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{float(value) * 100:.{digits}f}%"


def num(value: float | Decimal | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{float(value):,.{digits}f}"


def when(ts: datetime | None) -> str:
    if ts is None:
        return "n/a"
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def bullet(lines: list[str]) -> str:
    return "\n".join(f"• {line}" for line in lines)
