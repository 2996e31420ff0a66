"""Charts as PNG bytes (matplotlib, headless): the bot sends them, the demo and notebooks save them."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl


def skill_vs_luck_chart(stats: pl.DataFrame, *, label_column: str | None = None, title: str = "") -> bytes:
    """Each trader: annualized Sharpe against PSR (the probability the true Sharpe is above zero),
    with the DSR benchmark drawn in: the Sharpe the luckiest of this many unskilled traders would
    show. Only traders right of that line are distinguishable from luck. Colored by
    `label_column` when given (e.g. the simulator's true archetype)."""
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    if label_column and label_column in stats.columns:
        for label, part in sorted(stats.group_by(label_column), key=lambda kv: str(kv[0][0])):
            ax.scatter(part["sharpe"], part["psr"], s=10, alpha=0.6, label=str(label[0]))
        ax.legend(title=label_column, fontsize=8, markerscale=2, loc="lower right")
    else:
        ax.scatter(stats["sharpe"], stats["psr"], s=10, alpha=0.6)
    if "dsr_sr0_daily" in stats.columns and stats.height:
        sr0_annual = float(stats["dsr_sr0_daily"][0]) * 365**0.5
        ax.axvline(sr0_annual, color="black", lw=1, ls="--")
        ax.text(
            sr0_annual,
            0.5,
            f" luck benchmark\n SR {sr0_annual:.1f}\n ({int(stats['dsr_trials'][0])} traders)",
            fontsize=8,
            va="center",
        )
    ax.set_xlabel("Sharpe ratio of daily PnL (annualized)")
    ax.set_ylabel("Probabilistic Sharpe ratio (P[true SR > 0])")
    ax.set_title(title or "Skill versus luck")
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
