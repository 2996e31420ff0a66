"""/copytrader's questions, summary and menus. A profile is asked field by field; each field says
how it is asked (typed, or buttons), how a typed answer is read, and how it reads in the summary.

Values in the draft are JSON (they live in `user_data`, saved in PostgreSQL): amounts as decimal
strings of USDC, percentages as decimal strings, pairs as lists of pair indexes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bot import inputs
from bot.inputs import Range
from bot.replies import Keyboard
from bot.views.common import esc
from data.pairs import Pair
from data.units import format_usdc, usdc_to_micro

Draft = dict[str, Any]


def _usdc(value: str | None) -> str:
    return "no limit" if value is None else f"{format_usdc(usdc_to_micro(Decimal(value)))} USDC"


def _pairs(indexes: list[int] | None, catalogue: dict[int, Pair], empty: str) -> str:
    if not indexes:
        return empty
    return ", ".join(catalogue[i].symbol if i in catalogue else f"pair {i}" for i in indexes)


@dataclass(frozen=True)
class Field:
    key: str
    label: str
    prompt: str
    parse: Callable[[str, dict[int, Pair]], Any] | None = None  # None: buttons only
    choices: list[tuple[str, Any]] = field(default_factory=list)
    none_label: str | None = None  # a button meaning "no limit" (the value None)
    applies: Callable[[Draft], bool] = lambda d: True
    show: Callable[[Any, dict[int, Pair]], str] = lambda v, c: esc(v)


def _amount(within: Range, what: str) -> Callable[[str, dict[int, Pair]], str]:
    return lambda text, _c: str(inputs.number(text, within, max_decimals=6, what=what))


def _optional_amount(within: Range, what: str) -> Callable[[str, dict[int, Pair]], str | None]:
    def parse(text: str, _c: dict[int, Pair]) -> str | None:
        value = inputs.optional_number(text, within, max_decimals=6, what=what)
        return None if value is None else str(value)

    return parse


USDC = Range(Decimal(1), Decimal(10_000_000), " USDC")
SIZING = {
    "fixed": "a fixed amount per trade",
    "equity_pct": "a percent of your equity per trade",
    "proportional": "the leader's share of their equity, applied to yours",
    "multiplier": "a multiple of the leader's amount",
}
VENUES = {
    "paper": "Paper (simulated money, real prices)",
    "onchain": "On-chain Avantis (real USDC, our delegate trades for you)",
    "veranta": "Veranta (real USDC through Veranta's relayer, delegate mode)",
}
SIDES = {"both": "longs and shorts", "long": "longs only", "short": "shorts only"}


def _amount_prompt(d: Draft) -> str:
    mode = d.get("sizing_mode")
    if mode == "equity_pct":
        return "What percent of your equity should each copy use? (0.1 to 100, e.g. 2)"
    if mode == "multiplier":
        return "What multiple of the leader's amount should you copy? (0.01 to 10, e.g. 0.5 copies half)"
    return "How many USDC of margin per copied trade? (e.g. 100)"


def _parse_amount(text: str, catalogue: dict[int, Pair], mode: str | None) -> str:
    if mode == "equity_pct":
        return str(
            inputs.number(text, Range(Decimal("0.1"), Decimal(100), "%"), max_decimals=4, what="a percent")
        )
    if mode == "multiplier":
        return str(
            inputs.number(text, Range(Decimal("0.01"), Decimal(10), "x"), max_decimals=4, what="a multiple")
        )
    return str(inputs.number(text, USDC, max_decimals=6, what="an amount of USDC"))


def _show_amount(value: Any, d: Draft) -> str:
    mode = d.get("sizing_mode")
    if value is None:
        return "—"
    if mode == "equity_pct":
        return f"{esc(value)}% of equity"
    if mode == "multiplier":
        return f"{esc(value)}× the leader"
    return _usdc(value)


FIELDS: list[Field] = [
    Field(
        "name",
        "Name",
        "What should this profile be called? (1–32 letters or digits, e.g. <i>main</i>)",
        parse=lambda t, _c: inputs.profile_name(t),
    ),
    Field(
        "venue",
        "Venue",
        "Where should copies be placed? Paper is the safe default: simulated money at real prices.",
        choices=[(label, key) for key, label in VENUES.items()],
        show=lambda v, _c: esc(VENUES.get(v, v)),
    ),
    Field(
        "wallet",
        "Wallet",
        "",  # written by `wallet_prompt`: it shows our delegate address
        parse=lambda t, _c: inputs.address(t),
        applies=lambda d: d.get("venue") in ("onchain", "veranta"),
        show=lambda v, _c: f"<code>{esc(v)}</code>" if v else "—",
    ),
    Field(
        "equity",
        "Equity",
        "How many USDC does this account hold for copying? Percent sizing and your limits use it. (e.g. 1000)",
        parse=_amount(USDC, "an amount of USDC"),
        show=lambda v, _c: _usdc(v),
    ),
    Field(
        "sizing_mode",
        "Sizing",
        "How big should each copy be?",
        choices=[
            ("Fixed USDC per trade", "fixed"),
            ("% of my equity", "equity_pct"),
            ("Same share as the leader", "proportional"),
            ("Multiple of the leader", "multiplier"),
        ],
        show=lambda v, _c: esc(SIZING.get(v, v)),
    ),
    Field(
        "amount",
        "Amount",
        "",  # depends on the sizing mode: `prompt_for`
        applies=lambda d: d.get("sizing_mode") != "proportional",
    ),
    Field(
        "leverage_cap",
        "Leverage cap",
        "Highest leverage a copy may use (1 to 100). A copy uses the leader's leverage up to this cap "
        "and the pair's maximum.",
        parse=lambda t, _c: (
            None
            if inputs.is_none(t)
            else str(
                inputs.number(t, Range(Decimal(1), Decimal(100), "x"), max_decimals=2, what="a leverage")
            )
        ),
        choices=[("5×", "5"), ("10×", "10"), ("25×", "25")],
        none_label="No cap (pair maximum)",
        show=lambda v, _c: "pair maximum" if v is None else f"{esc(v)}×",
    ),
    Field(
        "max_position",
        "Max position",
        "Largest position size (margin × leverage) in USDC, or <i>none</i>.",
        parse=_optional_amount(USDC, "an amount of USDC"),
        none_label="No limit",
        show=lambda v, _c: _usdc(v),
    ),
    Field(
        "max_exposure",
        "Max exposure",
        "Largest total size of all your open copies together, in USDC, or <i>none</i>.",
        parse=_optional_amount(USDC, "an amount of USDC"),
        none_label="No limit",
        show=lambda v, _c: _usdc(v),
    ),
    Field(
        "daily_loss",
        "Daily loss limit",
        "How many USDC may you lose in one day (UTC) before copying pauses? Or <i>none</i>.",
        parse=_optional_amount(USDC, "an amount of USDC"),
        none_label="No limit",
        show=lambda v, _c: _usdc(v),
    ),
    Field(
        "max_drawdown",
        "Max drawdown",
        "Pause copying when equity falls this many percent below its peak (1 to 100), or <i>none</i>.",
        parse=lambda t, _c: (
            None
            if inputs.is_none(t)
            else str(inputs.number(t, Range(Decimal(1), Decimal(100), "%"), max_decimals=2, what="a percent"))
        ),
        choices=[("10%", "10"), ("20%", "20"), ("30%", "30")],
        none_label="No limit",
        show=lambda v, _c: "no limit" if v is None else f"{esc(v)}%",
    ),
    Field(
        "slippage_bps",
        "Slippage bound",
        "How far may the price move from the leader's before a copy is refused? Type a percent "
        "(0 to 5, e.g. 0.5) or pick one.",
        parse=lambda t, _c: str(
            int(inputs.number(t, Range(Decimal(0), Decimal(5), "%"), max_decimals=2, what="a percent") * 100)
        ),
        choices=[("0.25%", "25"), ("0.5%", "50"), ("1%", "100")],
        show=lambda v, _c: f"{Decimal(v) / 100:g}%",
    ),
    Field(
        "pair_allow",
        "Only pairs",
        "Copy only some pairs? Send their names (e.g. <i>BTC, ETH</i>), or pick All pairs.",
        parse=lambda t, c: None if inputs.is_none(t) else inputs.pairs(t, c),
        none_label="All pairs",
        show=lambda v, c: _pairs(v, c, "all pairs"),
    ),
    Field(
        "pair_block",
        "Never pairs",
        "Pairs never to copy? Send their names (e.g. <i>DOGE, PEPE</i>), or pick None.",
        parse=lambda t, c: [] if inputs.is_none(t) else inputs.pairs(t, c),
        none_label="None",
        show=lambda v, c: _pairs(v, c, "none"),
    ),
    Field(
        "side",
        "Sides",
        "Which of the leader's trades should be copied?",
        choices=[("Longs and shorts", "both"), ("Longs only", "long"), ("Shorts only", "short")],
        show=lambda v, _c: esc(SIDES.get(v, v)),
    ),
    Field(
        "reverse",
        "Reverse",
        "Copy as is, or take the opposite side of every trade (for fading a trader)?",
        choices=[("Copy as is", False), ("Reverse", True)],
        show=lambda v, _c: "yes: the opposite side" if v else "no",
    ),
    Field(
        "regime_guard",
        "Regime guard",
        "Skip new copies while the market regime of the pair is red (dangerous), or while the model "
        "has no answer?",
        choices=[("Yes, guard me", True), ("No", False)],
        show=lambda v, _c: "on" if v else "off",
    ),
]
BY_KEY = {f.key: f for f in FIELDS}
DEFAULTS: Draft = {
    "venue": "paper",
    "slippage_bps": "50",
    "side": "both",
    "reverse": False,
    "regime_guard": False,
}


def prompt_for(f: Field, d: Draft, delegate: str | None, step: int, of: int) -> str:
    if f.key == "amount":
        text = _amount_prompt(d)
    elif f.key == "wallet":
        text = wallet_prompt(delegate, d.get("venue", "onchain"))
    else:
        text = f.prompt
    return f"<b>{step}/{of} · {f.label}</b>\n{text}"


def wallet_prompt(delegate: str | None, venue: str) -> str:
    where = "Avantis" if venue == "onchain" else "Veranta"
    if delegate is None:
        return (
            f"Real-money copying on {where} is not available on this Vanta: no delegate key is configured. "
            "Please pick Paper."
        )
    return (
        f"Copies on {where} are placed by our <b>delegate</b>: it can open and close trades for your "
        "wallet, never withdraw.\n"
        f"1. In {where}, open <i>Settings → Delegate</i> (the contract's <code>setDelegate</code>) and "
        f"register this address:\n<code>{esc(delegate)}</code>\n"
        "2. Send me your wallet address (0x…). I check the registration on chain before copying starts."
    )


def field_keyboard(f: Field) -> Keyboard:
    rows: Keyboard = [[(label, f"ct:v:{i}")] for i, (label, _) in enumerate(f.choices)]
    if len(f.choices) == 3 and all(len(label) <= 8 for label, _ in f.choices):
        rows = [[(label, f"ct:v:{i}") for i, (label, _) in enumerate(f.choices)]]
    if f.none_label:
        rows.append([(f.none_label, "ct:v:none")])
    rows.append([("✖ Cancel", "ct:cancel")])
    return rows


def summary(d: Draft, catalogue: dict[int, Pair], *, editing: bool) -> str:
    lines = []
    for f in FIELDS:
        if not f.applies(d):
            continue
        value = d.get(f.key)
        shown = _show_amount(value, d) if f.key == "amount" else f.show(value, catalogue)
        lines.append(f"<b>{f.label}:</b> {shown}")
    head = "Changes to your profile" if editing else "Your new profile"
    return f"<b>{head}</b>\n" + "\n".join(lines) + "\n\nSave it?"


def summary_keyboard() -> Keyboard:
    return [[("✅ Save", "ct:save")], [("✏️ Change something", "ct:fields")], [("✖ Cancel", "ct:cancel")]]


def fields_keyboard(d: Draft, *, editing: bool) -> Keyboard:
    """The settings that can be changed (a stored profile's venue cannot)."""
    buttons = [
        (f.label, f"ct:f:{f.key}") for f in FIELDS if f.applies(d) and not (editing and f.key == "venue")
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    rows.append([("« Back to summary", "ct:sum")])
    return rows


BUTTONS_ONLY = "Please pick one of the buttons above (or /cancel)."
TEXT_PLEASE = "I can only read text here: type your answer or use the buttons (or /cancel)."
WHICH_FIELD = "Which setting do you want to change?"
CHECKING = "Checking the chain…"
SAVED_FOR_LATER = "Saved for later: it stays paused until the delegate shows up"


def try_again(problem: str, f: Field) -> str:
    """`problem` is written by bot.inputs for people (no markup in it)."""
    return f"{esc(problem)}\n<i>{f.label}: try again, or /cancel.</i>"


NO_PROFILES = (
    "<b>Copy profiles</b>\nYou have none yet. A profile says where your copies go (venue), how big "
    "they are, and the limits that stop them."
)
SAVED_NEW = "✅ Profile <b>{name}</b> saved. Next: /alfa to pick a trader to follow."
SAVED_EDIT = "✅ Profile <b>{name}</b> updated. Your follows use the new settings from the next trade."
DELEGATE_MISSING = (
    "I can't see our delegate registered for <code>{wallet}</code> yet. Register "
    "<code>{delegate}</code> as its delegate, then press Check again. You can also save the profile now: "
    "it stays paused until the registration shows up."
)
DELEGATE_UNCHECKED = (
    "I couldn't reach the chain to check the registration just now. Press Check again in a "
    "minute, or save the profile now: it stays paused until the registration shows up."
)
PAUSED_UNTIL_DELEGATE = (
    "⏸ It is paused until our delegate is registered for your wallet: /resume once you've done it."
)
DELEGATE_OK = "✅ Our delegate is registered for <code>{wallet}</code>."


def delegate_keyboard() -> Keyboard:
    return [
        [("🔄 Check again", "ct:chk")],
        [("Continue, enable it later", "ct:later")],
        [("✖ Cancel", "ct:cancel")],
    ]


def delete_confirm(name: str) -> str:
    return (
        f"Delete profile <b>{esc(name)}</b>? Its follows stop; copies already open stay open until "
        "you close them on the venue. This cannot be undone."
    )


def delete_keyboard(profile_id: int) -> Keyboard:
    return [[("🗑 Yes, delete it", f"ct:dy:{profile_id}")], [("No, keep it", "ct:menu")]]


# --- between the draft and the copy service ------------------------------------------------------

PROFILE_KEYS = ("name", "venue", "wallet", "equity", "max_exposure", "daily_loss", "max_drawdown")
COPY_KEYS = (
    "sizing_mode",
    "amount",
    "leverage_cap",
    "max_position",
    "slippage_bps",
    "pair_allow",
    "pair_block",
    "side",
    "reverse",
    "regime_guard",
)
EXPIRED = "That button belongs to an older question."
CANCELLED = "Okay, nothing was saved."
NOT_REMOVABLE = (
    "A {label} can't be removed once set, only changed: pick a value instead of “no limit” "
    "(a large one if you want it out of the way)."
)


def _micro_to_usdc(micro: int | None) -> str | None:
    return None if micro is None else str((Decimal(micro) / 1_000_000).normalize())


def values_of(profile: Any, copy: dict[str, Any] | None) -> Draft:
    """A stored profile (the service's view) and its copy settings as a draft's values."""
    values: Draft = {
        "name": profile.name,
        "venue": profile.venue,
        "wallet": profile.wallet,
        "equity": _micro_to_usdc(profile.equity_usdc),
        "max_exposure": _micro_to_usdc(profile.max_total_exposure_usdc),
        "daily_loss": _micro_to_usdc(profile.daily_loss_limit_usdc),
        "max_drawdown": None
        if profile.max_drawdown_pct is None
        else str(profile.max_drawdown_pct.normalize()),
    }
    values.update({k: v for k, v in DEFAULTS.items() if k not in values})
    values.update(copy or {})
    return values


def copy_settings(values: Draft) -> dict[str, Any]:
    return {k: values.get(k) for k in COPY_KEYS}


def profile_input_kwargs(values: Draft) -> dict[str, Any]:
    """The profile's settings for `CopyService.create_profile` (`ProfileInput` fields)."""
    return {
        "name": values["name"],
        "venue": values["venue"],
        "wallet": values.get("wallet") if values.get("venue") != "paper" else None,
        "equity": values.get("equity"),
        "daily_loss_limit": values.get("daily_loss"),
        "max_drawdown_pct": values.get("max_drawdown"),
        "max_total_exposure": values.get("max_exposure"),
    }


_PROFILE_ARGS = {
    "name": "name",
    "wallet": "wallet",
    "equity": "equity",
    "daily_loss": "daily_loss_limit",
    "max_drawdown": "max_drawdown_pct",
    "max_exposure": "max_total_exposure",
}


def profile_changes(before: Draft, after: Draft) -> dict[str, Any]:
    """What changed, as `CopyService.update_profile` keywords. A limit cannot go back to none."""
    changes = {}
    for key, arg in _PROFILE_ARGS.items():
        if after.get(key) == before.get(key):
            continue
        if after.get(key) is None:
            raise ValueError(NOT_REMOVABLE.format(label=BY_KEY[key].label.lower()))
        changes[arg] = after[key]
    return changes


def follow_input_kwargs(copy: dict[str, Any]) -> dict[str, Any]:
    """A profile's copy settings as `FollowInput` fields."""
    mode = copy.get("sizing_mode") or "fixed"
    amount = copy.get("amount")
    return {
        "mode": mode,
        "fixed": amount if mode == "fixed" else None,
        "pct": amount if mode == "equity_pct" else None,
        "multiplier": amount if mode == "multiplier" else None,
        "leverage_cap": copy.get("leverage_cap"),
        "max_position": copy.get("max_position"),
        "side": copy.get("side") or "both",
        "reverse": bool(copy.get("reverse")),
        "slippage_bps": copy.get("slippage_bps") or "50",
        "regime_guard": bool(copy.get("regime_guard")),
        "allow": list(copy.get("pair_allow") or []),
        "block": list(copy.get("pair_block") or []),
    }


def copy_settings_of_follow(settings: dict[str, Any], mode: str) -> dict[str, Any]:
    """Copy settings from an existing follow (a profile made outside the bot has no others)."""
    amount = {
        "fixed": _micro_to_usdc(settings.get("fixed_collateral_usdc")),
        "equity_pct": None
        if settings.get("equity_pct") is None
        else str(Decimal(settings["equity_pct"]).normalize()),
        "multiplier": None
        if settings.get("multiplier") is None
        else str(Decimal(settings["multiplier"]).normalize()),
    }.get(mode)
    return {
        "sizing_mode": mode,
        "amount": amount,
        "leverage_cap": None
        if settings.get("leverage_cap") is None
        else str(Decimal(settings["leverage_cap"]).normalize()),
        "max_position": _micro_to_usdc(settings.get("max_position_usdc")),
        "slippage_bps": str(settings.get("slippage_bps", 50)),
        "pair_allow": list(settings.get("pair_allow") or []) or None,
        "pair_block": list(settings.get("pair_block") or []),
        "side": settings.get("side_filter", "both"),
        "reverse": bool(settings.get("reverse")),
        "regime_guard": bool(settings.get("regime_guard")),
    }


def parse_amount(text: str, mode: str | None) -> str:
    return _parse_amount(text, {}, mode)


def shown(f: Field, values: Draft, catalogue: dict[int, Pair]) -> str:
    value = values.get(f.key)
    return _show_amount(value, values) if f.key == "amount" else f.show(value, catalogue)


STATUS = {"active": "▶️ active", "paused": "⏸ paused", "stopped": "⏹ stopped"}


def copy_summary(copy: dict[str, Any] | None) -> str:
    if not copy:
        return "copy settings not set"
    mode = copy.get("sizing_mode")
    if mode == "proportional":
        size = "the leader's share"
    else:
        size = _show_amount(copy.get("amount"), copy)
    lev = copy.get("leverage_cap")
    return f"{esc(size)}{'' if lev is None else f', ≤ {esc(lev)}×'}"


def menu(profiles: list[Any], copies: dict[int, dict[str, Any] | None]) -> tuple[str, Keyboard]:
    if not profiles:
        return NO_PROFILES, [[("➕ Create a profile", "ct:new")], [("✖ Close", "ct:cancel")]]
    lines = ["<b>Your copy profiles</b>"]
    rows: Keyboard = []
    for p in profiles:
        equity = "equity unknown" if p.equity_usdc is None else f"equity {format_usdc(p.equity_usdc)} USDC"
        paused = f" ({esc(p.pause_reason.replace('_', ' '))})" if p.pause_reason else ""
        lines.append(
            f"• <b>{esc(p.name)}</b> · {esc(p.venue)} · {STATUS.get(p.status, p.status)}{paused} · {equity} · "
            f"{copy_summary(copies.get(p.id))}"
        )
        rows.append([(f"✏️ {p.name}", f"ct:e:{p.id}"), (f"🗑 {p.name}", f"ct:d:{p.id}")])
    rows.append([("➕ New profile", "ct:new")])
    rows.append([("✖ Close", "ct:cancel")])
    return "\n".join(lines), rows
