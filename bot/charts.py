"""The bot's charts as PNG bytes: a trader's equity curve, a follower's copy equity, the market
regimes. Rendered in worker threads (`render`) so a chart never stalls the event loop that
answers every other user; matplotlib's object API (a `Figure` per chart, no pyplot state) is safe
to use from threads.

Amounts arrive exact (Decimal, micro-USDC); they become floats only here, as pixel positions.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import ParamSpec

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

P = ParamSpec("P")
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vanta-chart")
REGIME_COLORS = {"green": "#2e9e44", "yellow": "#e0a800", "red": "#d62728"}
_UNKNOWN_COLOR = "#8c8c8c"


async def render(chart: Callable[P, bytes], *args: P.args, **kwargs: P.kwargs) -> bytes:
    """Draw `chart(*args)` in the chart threads and return its PNG."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, lambda: chart(*args, **kwargs))


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def equity_png(
    points: Sequence[tuple[datetime, Decimal]],
    *,
    title: str,
    ylabel: str = "USDC",
    zero_line: bool = True,
) -> bytes:
    """A step line of equity (or cumulative PnL) over time; the area under water shaded red."""
    fig = Figure(figsize=(8, 4), dpi=100)
    ax = fig.add_subplot()
    if points:
        xs = [t for t, _ in points]
        ys = [float(v) for _, v in points]
        ax.step(xs, ys, where="post", color="#1f77b4", lw=1.6)
        if zero_line:
            ax.axhline(0, color="black", lw=0.8)
            ax.fill_between(xs, ys, 0, where=[y < 0 for y in ys], step="post", color="#d62728", alpha=0.15)
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    else:
        ax.text(0.5, 0.5, "no closed trades yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return _png(fig)


@dataclass(frozen=True)
class RegimePoint:
    pair: str
    regime: str  # green | yellow | red | unknown
    volatility: float | None
    trend: float | None
    confidence: float | None


def regime_png(points: Sequence[RegimePoint], *, title: str = "Market regime by pair") -> bytes:
    """Each pair placed by trend (x) and volatility (y), colored by its regime, sized by the
    model's confidence; pairs the model cannot place are listed apart rather than guessed."""
    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.add_subplot()
    placed = [p for p in points if p.volatility is not None and p.trend is not None]
    for p in placed:
        ax.scatter(
            [p.trend],
            [p.volatility],
            s=80 + 320 * (p.confidence or 0),
            color=REGIME_COLORS.get(p.regime, _UNKNOWN_COLOR),
            alpha=0.8,
            edgecolors="black",
            linewidths=0.5,
        )
        ax.annotate(p.pair, (p.trend, p.volatility), xytext=(6, 6), textcoords="offset points", fontsize=9)  # type: ignore[arg-type]
    unplaced = [p.pair for p in points if p not in placed]
    if unplaced:
        ax.text(
            0.01, 0.01, "no answer: " + ", ".join(unplaced), transform=ax.transAxes, fontsize=8, color="#555"
        )
    if not points:
        ax.text(0.5, 0.5, "the regime model has no answer", ha="center", va="center", transform=ax.transAxes)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("trend (negative: falling, positive: rising)")
    ax.set_ylabel("volatility")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    for name, color in REGIME_COLORS.items():
        ax.scatter([], [], color=color, label=name)
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)
