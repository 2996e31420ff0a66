"""Why a copy was not placed, in words a follower understands (one per `Refusal`)."""

from __future__ import annotations

from execution.copy.model import Refusal

REASONS: dict[str, str] = {
    Refusal.KILL_SWITCH: "Vanta's operators have stopped all copying for now (kill switch)",
    Refusal.PROFILE_PAUSED: "your profile is paused (/resume starts it again)",
    Refusal.PAIR_UNKNOWN: "the venue doesn't list this pair",
    Refusal.PAIR_BLOCKED: "you blocked this pair",
    Refusal.PAIR_NOT_ALLOWED: "this pair isn't on your list of pairs to copy",
    Refusal.SIDE_FILTERED: "you copy only the other side (longs or shorts)",
    Refusal.OPENED_BEFORE_FOLLOW: "the leader opened this position before you followed them",
    Refusal.EVENT_TOO_OLD: "the leader's trade reached us too late to copy at a fair price",
    Refusal.NO_PRICE: "there was no current price for this pair",
    Refusal.SLIPPAGE: "the price had moved past your slippage bound",
    Refusal.EQUITY_UNKNOWN: "your profile's equity isn't known, so the size can't be worked out",
    Refusal.LEADER_EQUITY_UNKNOWN: "the leader's equity couldn't be read, so the proportional size is unknown",
    Refusal.BELOW_VENUE_MINIMUM: "the copy would be smaller than the venue's minimum position",
    Refusal.OVER_MAX_POSITION: "it would exceed your maximum position size",
    Refusal.OVER_TOTAL_EXPOSURE: "it would exceed your maximum total exposure",
    Refusal.DAILY_LOSS_LIMIT: "your daily loss limit has been reached",
    Refusal.MAX_DRAWDOWN: "your maximum drawdown has been reached",
    Refusal.NO_COPIED_POSITION: "you hold no copy of this position",
    Refusal.TP_SL_NOT_COPIED: "your settings don't copy take-profit and stop-loss moves",
    Refusal.REGIME_RED: "the market regime of this pair is red and you asked for the regime guard",
    Refusal.REGIME_UNKNOWN: "the regime model had no answer and you asked for the regime guard",
    Refusal.INVALID_FOLLOW_SETTINGS: "one of this follow's settings can't be applied (edit it with /copytrader)",
    Refusal.OPEN_NOT_SEEN: "the opening of this position never reached Vanta",
}


def in_words(reason: str | None) -> str:
    if not reason:
        return "no reason was recorded"
    return REASONS.get(reason, reason.replace("_", " "))
