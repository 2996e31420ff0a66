"""A user's own profiles and their copy settings, looked up through the copy service as that user
(someone else's profile is "no such profile", whatever a forged button says)."""

from __future__ import annotations

from typing import Any

from bot import preferences
from bot.deps import BotDeps
from bot.views.copytrader import copy_settings_of_follow
from execution.copy.service import Actor, CopyError


async def own_profile(deps: BotDeps, telegram_user_id: int, profile_id: int) -> Any:
    for p in await deps.service.profiles(Actor.user(telegram_user_id)):
        if p.id == profile_id:
            return p
    raise CopyError(f"no such profile {profile_id}", "profile")


async def copy_settings(deps: BotDeps, profile: Any) -> dict[str, Any] | None:
    """What /copytrader stored for the profile; for a profile made elsewhere (`vanta follow add`),
    its latest follow's settings; None if it has neither."""
    stored = await preferences.copy_settings(deps.pool, profile.id)
    if stored is not None:
        return stored
    follows = await deps.service.follows(Actor.user(profile.telegram_user_id), profile.id)
    return copy_settings_of_follow(follows[-1].settings, follows[-1].mode) if follows else None
