"""/settings: which alerts a user gets."""

from __future__ import annotations

from bot.replies import Keyboard

CHOICES = {
    "info": "Everything, also copies not placed",
    "fill": "Fills, warnings and pauses",
    "warning": "Warnings and pauses only",
    "critical": "Only pauses and failures",
}


def settings(level: str) -> str:
    return (
        "<b>Alerts</b>\nI message you when a copy fills, when one is not placed and why, when a limit "
        "pauses a profile, and when something needs your attention.\n"
        f"Now: <b>{CHOICES.get(level, level)}</b>. Which alerts do you want?"
    )


def keyboard(level: str) -> Keyboard:
    return [[(("✓ " if key == level else "") + label, f"se:{key}")] for key, label in CHOICES.items()]


def saved(level: str) -> str:
    return f"✅ Saved. From now on: <b>{CHOICES[level]}</b>."
