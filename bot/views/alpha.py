"""/alpha: the market regime of each pair and the copy opportunities it leaves open."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.charts import RegimePoint
from bot.replies import Keyboard
from bot.views.common import esc, pct, short, when
from serving.schemas import Opportunity, RegimeState

DOT = {"green": "🟢", "yellow": "🟡", "red": "🔴"}
MEANING = {
    "green": "calm enough to copy",
    "yellow": "choppy: copy with care",
    "red": "dangerous: guarded follows skip new trades",
}


def regimes(states: list[RegimeState]) -> str:
    if not states:
        return "📈 <b>Market regime</b>\nThe regime model has no pair to report yet."
    latest = max(s.as_of for s in states)
    lines = [f"📈 <b>Market regime</b> · as of {when(datetime.fromtimestamp(latest, UTC))}"]
    for s in sorted(states, key=lambda s: s.pair):
        # volatility_1h: the last hour's realized volatility, annualized (research.regime)
        vol = "n/a" if s.volatility_1h is None else f"{s.volatility_1h:.0%} a year"
        lines.append(
            f"{DOT.get(s.color, '⚪')} <b>{esc(s.pair)}</b> {s.color} · {s.trend} · volatility {vol} · "
            f"{pct(s.confidence, 0)} sure — {MEANING.get(s.color, '')}"
        )
    models = sorted({s.model for s in states})
    lines.append(f"<i>Regime model {esc(', '.join(models))}: an estimate from recent prices.</i>")
    return "\n".join(lines)


def regimes_unknown(reason: str) -> str:
    return (
        f"📈 <b>Market regime</b>\nThe regime model isn't answering right now ({esc(reason[:120])}). "
        "I won't guess a color; meanwhile follows with the regime guard don't copy new trades."
    )


def opportunities(items: list[Opportunity]) -> str:
    if not items:
        return (
            "<b>Copy opportunities</b>\nNone right now: no eligible leader has a good enough forecast in a "
            "pair that isn't red."
        )
    lines = ["<b>Copy opportunities</b> (leaders with good forecasts, in pairs that aren't red)"]
    for i, o in enumerate(items, 1):
        score = "" if o.score is None else f" · score {o.score:.2f}"
        lines.append(
            f"{i}. <code>{esc(short(o.trader))}</code> on {esc(o.pair)} {DOT.get(o.regime, '')} · "
            f"{pct(o.p_win_7d, 0)} chance of a profitable week{score}"
            + (f" · {esc(o.archetype)}" if o.archetype else "")
            + f"\n    {esc(o.reason)}"
        )
    lines.append("<i>Forecasts are model estimates, not promises.</i>")
    return "\n".join(lines)


def opportunities_unknown(reason: str) -> str:
    return f"<b>Copy opportunities</b>\nThe forecast service isn't answering ({esc(reason[:120])}); nothing to suggest."


def opportunities_keyboard(items: list[Opportunity]) -> Keyboard:
    seen: list[str] = []
    for o in items:
        if o.trader not in seen:
            seen.append(o.trader)
    return [[(f"📇 {short(t)}", f"al:t:{t}"), ("⭐ Follow", f"fw:l:{t}")] for t in seen[:5]]


def chart_points(states: list[RegimeState]) -> list[RegimePoint]:
    return [RegimePoint(s.pair, s.color, s.volatility_1h, s.trend, s.confidence) for s in states]
