"""/follow, /unfollow, /pause, /resume, /stop: screens and buttons."""

from __future__ import annotations

from typing import Any

from bot.replies import Keyboard
from bot.views.common import esc, short
from bot.views.copytrader import COPY_KEYS, FIELDS, STATUS, shown
from data.pairs import Pair

ASK_ADDRESS = (
    "Which trader do you want to copy? Send their address (0x…), or pick one from the leaderboard: /alfa."
)
ADDRESS_AS_TEXT = "Please send the trader's address as text (0x…), or /cancel."


def or_cancel(problem: str) -> str:
    return f"{esc(problem)}\nOr /cancel."


NO_PROFILE = (
    "To copy a trader you need a copy profile first: where the copies go, how big they are and the "
    "limits that stop them."
)
COPY_FIELDS = [f for f in FIELDS if f.key in COPY_KEYS]


def no_profile_keyboard() -> Keyboard:
    return [[("⚙️ Set up a profile", "st:ct")]]


def pick_profile(leader: str, profiles: list[Any]) -> tuple[str, Keyboard]:
    text = f"Copy <code>{esc(leader)}</code> with which profile?"
    rows: Keyboard = [[(f"{p.name} · {p.venue}", f"fw:p:{p.id}:{leader}")] for p in profiles]
    rows.append([("✖ Cancel", "fw:n")])
    return text, rows


def confirm(leader: str, profile: Any, copy: dict[str, Any], catalogue: dict[int, Pair]) -> str:
    lines = [
        f"Follow <code>{esc(leader)}</code> with profile <b>{esc(profile.name)}</b> ({esc(profile.venue)})?",
        "Each of their new trades will be copied like this:",
    ]
    lines += [f"• {f.label}: {shown(f, copy, catalogue)}" for f in COPY_FIELDS if f.applies(copy)]
    lines.append("Positions they already hold are not copied. You can stop with /unfollow at any time.")
    if profile.status != "active":
        lines.append(
            f"⚠️ This profile is {STATUS.get(profile.status, profile.status)}: nothing is copied until /resume."
        )
    return "\n".join(lines)


def confirm_keyboard(profile_id: int, leader: str) -> Keyboard:
    return [[("✅ Follow", f"fw:y:{profile_id}:{leader}")], [("✖ Cancel", "fw:n")]]


def followed(leader: str, profile: Any) -> str:
    return (
        f"✅ Following <code>{esc(short(leader))}</code> with <b>{esc(profile.name)}</b>. I'll message you "
        "when a copy is placed, closed or not placed (and why). /status shows how it goes."
    )


NO_COPY_SETTINGS = "Profile <b>{name}</b> has no copy settings yet (how big each copy is). Set them with /copytrader → ✏️ {name}."
CANCELLED = "Okay, not following anyone new."


def follows_list(follows: list[Any]) -> tuple[str, Keyboard]:
    if not follows:
        return "You're not following anyone. /alfa shows traders worth a look.", []
    text = "Stop copying whom?"
    rows: Keyboard = [[(f"{short(f.leader)} · {f.profile}", f"uf:{f.id}")] for f in follows]
    rows.append([("✖ Cancel", "uf:n")])
    return text, rows


def unfollow_confirm(f: Any) -> str:
    return (
        f"Stop copying <code>{esc(f.leader)}</code> on <b>{esc(f.profile)}</b>? No new trades of theirs will be "
        "copied. Copies already open stay open and are <b>not</b> closed with the leader any more: close them "
        "yourself on the venue if you want out."
    )


def unfollow_keyboard(follow_id: int) -> Keyboard:
    return [[("Yes, stop copying", f"uy:{follow_id}")], [("No", "uf:n")]]


def unfollowed(f: Any) -> str:
    return f"Stopped copying <code>{esc(short(f.leader))}</code> on <b>{esc(f.profile)}</b>."


def choose_profile(verb: str, prefix: str, profiles: list[Any]) -> tuple[str, Keyboard]:
    rows: Keyboard = [
        [(f"{p.name} · {STATUS.get(p.status, p.status)}", f"{prefix}:{p.id}")] for p in profiles
    ]
    rows.append([("✖ Cancel", f"{prefix}:n")])
    return f"{verb} which profile?", rows


def nothing_to(verb: str) -> str:
    return f"You have no profile to {verb}. /copytrader lists your profiles."


def paused(p: Any) -> str:
    return (
        f"⏸ <b>{esc(p.name)}</b> is paused: no new copies. Open copies still close when their leader closes. "
        "/resume starts copying again."
    )


def resumed(p: Any) -> str:
    return f"▶️ <b>{esc(p.name)}</b> copies again from the leaders' next trades."


def stop_confirm(p: Any) -> str:
    return (
        f"Stop <b>{esc(p.name)}</b>? It copies no new trades until you /resume it; open copies still close "
        "when their leader closes."
    )


def stop_keyboard(profile_id: int) -> Keyboard:
    return [[("⏹ Yes, stop it", f"sy:{profile_id}")], [("No", "sp:n")]]


def stopped(p: Any) -> str:
    return f"⏹ <b>{esc(p.name)}</b> is stopped. /resume starts it again."


DELEGATE_NEEDED = (
    "I can't resume <b>{name}</b> yet: our delegate <code>{delegate}</code> is not registered for "
    "<code>{wallet}</code> on chain. Register it (Avantis → Settings → Delegate), then /resume again."
)
DELEGATE_UNCHECKED = (
    "I couldn't reach the chain to check your delegate registration. Please try /resume again in a minute."
)
LEFT_AS_IS = "Okay, nothing changed."
