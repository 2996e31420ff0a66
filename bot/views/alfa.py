"""/alfa: the AI leaderboard page by page and a trader's card, with the evidence beside every
figure (PSR, DSR, the minimum track record) and a plain warning where a record is too short to
tell skill from luck. Model outputs are estimates and read as such; ledger amounts are exact."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from bot.replies import Keyboard
from bot.views.common import esc, num, pct, short, when
from data.units import format_usdc
from serving.schemas import LeaderboardPage, LeaderboardRow, LeaderboardSort, TraderCard

PAGE_SIZE = 10
WINDOW_DAYS = 30  # the serving layer's stats window behind leaderboard PnL and trade counts
SORTS: dict[LeaderboardSort, str] = {"score": "AI score", "pnl": "PnL", "psr": "PSR"}
EXPLAIN = (
    "<i>PSR: the chance the trader's true Sharpe ratio is above zero, given their record. "
    "DSR: the same after allowing for how many traders we ranked (the best of many looks good by luck "
    "alone). Past results don't promise future ones.</i>"
)
USAGE = "Try /alfa, /alfa 2 (a page), /alfa pnl or /alfa psr (a sort), or /alfa 0x… (a trader)."
UNAVAILABLE = (
    "The AI service isn't answering right now ({reason}), so I can't show {what}. I won't guess: "
    "please try again in a minute."
)


def _usdc_signed(micro: int) -> str:
    return f"{format_usdc(micro, signed=True)} USDC"


def too_short(min_trl_days: float | None, psr: float | None, record_days: float) -> str | None:
    """A warning when the record cannot tell skill from luck: the minimum track record length
    (MinTRL) is longer than the record, or the statistics cannot be computed at all."""
    if psr is None or min_trl_days is None:
        return "⚠️ Not enough record to tell skill from luck."
    if psr <= 0.5:  # an estimated Sharpe ratio at or below zero: no record length would show skill
        return "⚠️ No evidence of skill: this record's Sharpe ratio is not above zero."
    if min_trl_days > record_days:
        return (
            f"⚠️ Record too short to tell skill from luck: it would take about {min_trl_days:,.0f} days "
            f"of trading like this, we have {record_days:,.0f}."
        )
    return None


def _row(r: LeaderboardRow) -> str:
    score = "n/a" if r.score is None else f"{r.score:.2f}"
    line = (
        f"<b>{r.rank}.</b> <code>{esc(short(r.trader))}</code> · score {score} · "
        f"{_usdc_signed(r.net_pnl_usdc)} in {WINDOW_DAYS} d\n"
        f"    PSR {num(r.psr)} · DSR {num(r.dsr)} · {r.trades} trades"
        + (f" · {esc(r.archetype)}" if r.archetype else "")
    )
    warning = too_short(r.min_trl_days, r.psr, WINDOW_DAYS)
    if warning:
        line += f"\n    {warning}"
    if r.flags:
        named = ", ".join(flag.replace("_", " ") for flag in r.flags)
        line += f"\n    🚩 Flagged ({esc(named)}): see the card for why."
    elif r.anomaly:
        line += "\n    🚩 Unusual record for the anomaly model: see the card."
    return line


def pages(page: LeaderboardPage) -> int:
    return max(1, -(-page.total // page.page_size))


def leaderboard(page: LeaderboardPage) -> str:
    head = (
        f"🏆 <b>AI leaderboard</b> · by {SORTS[page.sort]} · page {page.page}/{pages(page)} "
        f"({page.total} traders) · as of {when(datetime.fromtimestamp(page.as_of, UTC))}"
    )
    if not page.rows:
        return head + "\n\nNobody qualifies yet: no trader has a long enough record on the venue."
    body = "\n".join(_row(r) for r in page.rows)
    return f"{head}\n\n{body}\n\n{EXPLAIN}\nTap a number for the trader's card."


def leaderboard_keyboard(page: LeaderboardPage) -> Keyboard:
    numbers = [(str(r.rank), f"al:t:{r.trader}") for r in page.rows]
    rows: Keyboard = [numbers[i : i + 5] for i in range(0, len(numbers), 5)]
    nav = []
    if page.page > 1:
        nav.append(("‹ Prev", f"al:p:{page.page - 1}:{page.sort}"))
    if page.page < pages(page):
        nav.append(("Next ›", f"al:p:{page.page + 1}:{page.sort}"))
    if nav:
        rows.append(nav)
    rows.append(
        [(("✓ " if key == page.sort else "") + label, f"al:p:1:{key}") for key, label in SORTS.items()]
    )
    return rows


def card_caption(card: TraderCard) -> str:
    rank = f"#{card.rank} on the AI leaderboard" if card.rank is not None else "not eligible to lead"
    return f"<b>{esc(short(card.trader))}</b> · {rank} · cumulative realized PnL"


def _hours(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 3600:,.1f} h"


def card(card: TraderCard) -> str:
    lines = [f"<b>Trader</b> <code>{esc(card.trader)}</code>"]
    # The leaderboard ranks eligible leaders only; the analyzer ranks every trader it scored.
    place = (
        f"#{card.rank} on the AI leaderboard"
        if card.rank is not None
        else "not on the leaderboard (not eligible to lead)"
    )
    score = "n/a" if card.score is None else f"{card.score:.2f}"
    lines.append(
        f"{place} · #{card.analyzer_rank} of all traders scored · AI score {score} · "
        f"archetype: {esc(card.archetype or 'unknown')}"
    )
    s = card.stats
    record_days = float(s.window_days) if s else 0.0
    if s is None:
        lines.append("\n<b>Record</b>: no closed trade in the window.")
    else:
        lines.append(
            f"\n<b>Last {s.window_days} days</b>: {s.trades} trades, net {_usdc_signed(s.net_pnl_usdc)}, "
            f"volume {format_usdc(s.volume_usdc)} USDC\n"
            f"win rate {pct(s.win_rate)} · Sharpe {num(s.sharpe)} · Sortino {num(s.sortino)} · "
            f"max drawdown {format_usdc(s.max_drawdown_usdc)} USDC\n"
            f"avg leverage {num(s.avg_leverage, 1)}× · avg hold {_hours(s.avg_hold_seconds)} · "
            f"{s.pairs_traded} pairs"
            + ("" if s.eligible else " · <i>not eligible as a leader (activity or volume too low)</i>")
        )
    k = card.skill
    trl = "n/a" if k.min_trl_days is None else f"{k.min_trl_days:,.0f} days"
    boot = "n/a" if k.bootstrap_p is None else f"{k.bootstrap_p:.3f}"
    lines.append(
        f"\n<b>Skill or luck?</b> PSR {num(k.psr)} · DSR {num(k.dsr)} · record needed (MinTRL) {trl} · "
        f"bootstrap p {boot}"
    )
    warning = too_short(k.min_trl_days, k.psr, record_days)
    if warning:
        lines.append(warning)
    f = card.forecast
    if f.p_win_7d is None:
        lines.append("\n<b>Next 7 days</b>: the forecast model has no answer for this trader.")
    else:
        expected = (
            "" if f.expected_pnl_7d_usdc is None else f", expected PnL ≈ {f.expected_pnl_7d_usdc:+,.0f} USDC"
        )
        lines.append(
            f"\n<b>Next 7 days</b> (a model estimate, not a promise): {pct(f.p_win_7d, 0)} chance of a "
            f"profitable week{expected}."
        )
    if card.flags:
        lines.append("\n<b>Flags</b>")
        lines += [f"🚩 {esc(flag.reason)}" for flag in card.flags]
    elif card.anomaly:
        lines.append("\n🚩 The anomaly model finds this record unusual.")
    if card.models:
        versions = ", ".join(esc(v) for _, v in sorted(card.models.items()))
        lines.append(f"\n<i>Models: {versions} · as of {when(datetime.fromtimestamp(card.as_of, UTC))}</i>")
    return "\n".join(lines)


def card_keyboard(trader: str) -> Keyboard:
    return [[("⭐ Follow", f"fw:l:{trader}")], [("« Leaderboard", "al:p:1:score")]]


def equity_points(card: TraderCard) -> list[tuple[datetime, Decimal]]:
    return [(datetime.fromtimestamp(p.ts, UTC), Decimal(p.equity_usdc).scaleb(-6)) for p in card.equity_curve]


UNKNOWN_TRADER = "I know no trade by <code>{trader}</code>, so there is no card to show."
