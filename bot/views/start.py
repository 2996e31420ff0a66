"""/start and /help: what Vanta does and what it risks, in plain words."""

from __future__ import annotations

from bot.replies import Keyboard
from bot.views.common import esc

COMMANDS: list[tuple[str, str]] = [
    ("start", "What Vanta does, and the risks"),
    ("alfa", "AI leaderboard of traders"),
    ("copytrader", "Create, edit or delete your copy profiles"),
    ("follow", "Copy a trader"),
    ("unfollow", "Stop copying a trader"),
    ("status", "Your copies and their PnL"),
    ("alpha", "Market regime and copy opportunities"),
    ("pause", "Pause copying"),
    ("resume", "Resume copying"),
    ("stop", "Stop a profile for good"),
    ("settings", "Which alerts you get"),
    ("cancel", "Leave the current question"),
    ("help", "All commands"),
]
ADMIN_COMMANDS: list[tuple[str, str]] = [
    ("kill", "Kill switch: stop or resume all copying"),
    ("health", "Health of the services"),
]


def welcome(first_name: str) -> str:
    return (
        f"Hi {esc(first_name[:40])}! <b>Vanta copies Avantis traders for you, within limits you set.</b>\n\n"
        "It watches every trader on Avantis (perpetual futures on Base), measures who looks "
        "skilled rather than lucky, and copies the traders you pick into your account.\n\n"
        "<b>The risks, plainly</b>\n"
        "• Perpetual futures use leverage: a small move against a position can wipe out its margin "
        "(liquidation). Only copy with money you can lose.\n"
        "• Past results do not promise future ones. Most traders at the top of a leaderboard were "
        "lucky; next to every figure we show how sure we can be (PSR, DSR).\n"
        "• A copy fills at a different price than the leader's (slippage) and pays fees; your limits "
        "can refuse a copy, and we tell you why.\n"
        "• Real-money venues trade through our delegate key: it can open and close trades for you, "
        "never withdraw. You can revoke it at any time.\n"
        "• New profiles start on the <b>paper</b> venue: simulated money, real prices.\n\n"
        "Next: /alfa to see the leaderboard, /copytrader to set up a profile, /help for everything."
    )


def start_keyboard() -> Keyboard:
    return [[("🏆 Leaderboard", "st:alfa"), ("⚙️ Set up copying", "st:ct")], [("❓ Help", "st:help")]]


def help_text(is_admin: bool) -> str:
    lines = [f"/{name} — {about}" for name, about in COMMANDS]
    if is_admin:
        lines += ["", "<b>Admin</b>"] + [f"/{name} — {about}" for name, about in ADMIN_COMMANDS]
    return (
        "<b>What I can do</b>\n"
        + "\n".join(lines)
        + "\n\nMost answers have buttons; anything you type is checked and I say what I expected if it "
        "doesn't fit. /cancel leaves any question."
    )


OFF_TOPIC = "That doesn't answer my question. Use the buttons or type an answer, or /cancel."
NOT_UNDERSTOOD = "I didn't understand that. /help lists what I can do."


def unknown_command(command: str) -> str:
    return f"I don't know {command}. /help lists the commands."


EXPIRED_BUTTON = "This button belongs to an older message. Send the command again."
SLOW_DOWN = "You're sending commands faster than I can answer well. Please wait {seconds} s and try again."
OUR_FAULT = "Something went wrong on my side and I couldn't finish that. Please try again in a minute."
CANCELLED = "Okay, I've left that question. Nothing was saved. /help lists what I can do."
NOTHING_TO_CANCEL = "There's nothing to cancel right now."
ADMINS_ONLY = "That command is for Vanta's operators only."
