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
from typing import TYPE_CHECKING, ParamSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

P = ParamSpec("P")
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vanta-chart")
REGIME_COLORS = {"green": "#2e9e44", "yellow": "#e0a800", "red": "#d62728"}
_UNKNOWN_COLOR = "#8c8c8c"


async def render(chart: Callable[P, bytes], *args: P.args, **kwargs: P.kwargs) -> bytes:
    """Draw `chart(*args)` in the chart threads and return its PNG."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, lambda: chart(*args, **kwargs))


def _figure(width: float, height: float) -> Figure:
    """A figure of its own (no pyplot state: safe in threads); matplotlib loads on first use, so
    the bot starts without it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
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
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    fig = _figure(8, 4)
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
    regime: str  # green | yellow | red
    volatility: float | None  # the last hour's realized volatility, annualized (research.regime)
    trend: str  # bullish | bearish | neutral
    confidence: float


_TREND_MARK = {"bullish": "▲", "bearish": "▼", "neutral": "►"}


def regime_png(points: Sequence[RegimePoint], *, title: str = "Market regime by pair") -> bytes:
    """One bar per pair: its volatility, colored by its regime, labelled with the trend and the
    model's confidence. A pair without a volatility reading is drawn empty, never guessed."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import PercentFormatter

    rows = sorted(points, key=lambda p: p.pair, reverse=True)
    fig = _figure(8, max(2.5, 0.45 * len(rows) + 1.2))
    ax = fig.add_subplot()
    if not rows:
        ax.text(0.5, 0.5, "the regime model has no answer", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        ys = range(len(rows))
        widths = [p.volatility or 0.0 for p in rows]
        ax.barh(
            list(ys), widths, color=[REGIME_COLORS.get(p.regime, _UNKNOWN_COLOR) for p in rows], alpha=0.85
        )
        top = max(widths) or 1.0
        for y, p in zip(ys, rows, strict=True):
            vol = "n/a" if p.volatility is None else f"{p.volatility:.0%}"
            label = f" {_TREND_MARK.get(p.trend, '?')} {p.trend}, vol {vol}, {p.confidence:.0%} sure"
            ax.text((p.volatility or 0.0) + top * 0.01, y, label, va="center", fontsize=8)
        ax.set_yticks(list(ys), [p.pair for p in rows])
        ax.set_xlim(0, top * 1.6)
        ax.set_xlabel("volatility of the last hour, annualized")
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.legend(
            handles=[Patch(color=color, label=name) for name, color in REGIME_COLORS.items()],
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),  # beside the bars, never over a label
            fontsize=8,
        )
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)
