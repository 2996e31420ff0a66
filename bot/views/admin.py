"""/kill and /health for Vanta's operators."""

from __future__ import annotations

from bot.replies import Keyboard
from bot.views.common import bullet, esc
from serving.schemas import Health


def kill_state(on: bool) -> str:
    if on:
        return "🛑 <b>Kill switch is ON</b>: no copy is placed by any engine. Closes are not mirrored either."
    return "✅ <b>Kill switch is off</b>: engines copy as usual."


def kill_keyboard(on: bool) -> Keyboard:
    return [[("✅ Turn it off", "ad:kill:off")]] if on else [[("🛑 Turn the kill switch ON", "ad:kill:on")]]


def kill_confirm(turn_on: bool) -> str:
    if turn_on:
        return "Stop <b>all</b> copying for <b>every</b> follower, at once, in every engine?"
    return "Let every engine copy again?"


def kill_confirm_keyboard(turn_on: bool) -> Keyboard:
    what = "on" if turn_on else "off"
    return [
        [("Yes, " + ("stop everything" if turn_on else "resume copying"), f"ad:killy:{what}")],
        [("No", "ad:kill:" + ("off" if turn_on else "on"))],
    ]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def health(
    *, kill_switch: bool, serving: Health | None, serving_reason: str | None, backlog: dict[str, int]
) -> str:
    lines = ["<b>Health</b>"]
    lines.append("\n<b>Copying</b>")
    lines.append(bullet(["🛑 kill switch ON: nothing is copied" if kill_switch else "✅ kill switch off"]))
    lines.append("\n<b>AI service</b>")
    if serving is None:
        lines.append(f"❌ not answering: {esc(serving_reason or '?')}")
    else:
        state = "✅ ready" if serving.ready else "⚠️ not ready"
        models = ", ".join(f"{esc(k)} {esc(v)}" for k, v in sorted(serving.models.items())) or "none loaded"
        lines.append(
            bullet(
                [
                    state,
                    f"models: {models}",
                    f"data age: {_age(serving.data_age_s)} · traders: {serving.traders:,}",
                    *[f"problem: {esc(p)}" for p in serving.problems],
                ]
            )
        )
    lines.append("\n<b>Alerts (last 24 h)</b>")
    lines.append(
        bullet(
            [
                f"sent {backlog.get('sent', 0):,} · pending {backlog.get('pending', 0):,} "
                f"(oldest {_age(backlog.get('oldest_pending_s'))})",
                f"failed {backlog.get('failed', 0):,} · may be missing {backlog.get('unknown', 0):,} · "
                f"skipped by level {backlog.get('skipped', 0):,}",
            ]
        )
    )
    return "\n".join(lines)
