"""Notices to plain English, for the CLI now and the Telegram bot next (which may add markup or
charts around the same sentences). Money through `format_usdc`: exact, never a float."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from data.units import format_usdc
from execution.copy.notices import NoticeKind


def short_address(address: str | None) -> str:
    return (address or "?")[:10]


def _reason(value: str | None) -> str:
    return (value or "unknown reason").replace("_", " ")


def _decimal(value: Any) -> str:
    return f"{Decimal(value).normalize():f}" if value not in (None, "") else "?"


def _fill(f: dict[str, Any]) -> str:
    leader = short_address(f.get("leader"))
    pair = f.get("pair", "?")
    action = f.get("action")
    if action == "open":
        return (
            f"Copied {leader}: {str(f.get('side', '')).upper()} {pair} {format_usdc(int(f['collateral_usdc']))} USDC "
            f"x{_decimal(f.get('leverage'))} at {_decimal(f.get('price'))}"
        )
    if action == "update_tp_sl":
        return f"TP/SL of your {pair} copy updated like {leader}"
    part = "all" if f.get("closed_all") else "part"
    return f"Closed {part} of your {pair} copy of {leader}: {format_usdc(int(f.get('pnl_usdc') or 0), signed=True)} USDC"


_RENDERERS: dict[NoticeKind, Callable[[dict[str, Any]], str]] = {
    NoticeKind.FILL: _fill,
    NoticeKind.REFUSED: lambda f: (
        f"Copy of {short_address(f.get('leader'))} not placed: {_reason(f.get('reason'))}"
    ),
    NoticeKind.REJECTED: lambda f: (
        f"Copy of {short_address(f.get('leader'))} rejected by {f.get('venue', 'the venue')}: {f.get('reason') or '?'}"
    ),
    NoticeKind.PAUSED: lambda f: f"Copying paused: {_reason(f.get('reason'))} reached",
    NoticeKind.FAILED: lambda f: (
        f"A copy of {short_address(f.get('leader'))} ({_reason(f.get('action'))}) could not be completed "
        f"and needs attention: {f.get('error') or '?'}"
    ),
    NoticeKind.UNMATCHED_CLOSE: lambda f: (
        f"{short_address(f.get('leader'))} closed a {f.get('pair', '?')} position whose opening never reached "
        f"Vanta within {f.get('waited_s', '?')} s: nothing of yours was opened or closed for it"
    ),
}


def _drift(f: dict[str, Any]) -> str:
    ref, kind = f.get("position_ref", "?"), f.get("drift")
    text = {
        "closed_on_venue": f"Your copied position {ref} is no longer open on the venue",
        "size_changed": f"Your copied position {ref} changed size on the venue",
        "still_open_on_venue": f"Position {ref} is still open on the venue though its copy was closed",
        "untracked": f"Position {ref} on the venue is not a copy; Vanta leaves it alone",
    }.get(str(kind), f"Position {ref} differs between the venue and the journal")
    return text + (" (journal corrected)" if f.get("corrected") else "")


_RENDERERS[NoticeKind.DRIFT] = _drift


def render(kind: NoticeKind | str, fields: dict[str, Any]) -> str:
    """One notice as one sentence."""
    return _RENDERERS[NoticeKind(kind)](fields)
