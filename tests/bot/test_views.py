"""The leaderboard's words for the service's rows: a flagged trader's flags are named, an outlier to
the anomaly model is marked, a clean record carries neither, and PnL is the ledger's exact amount."""

from __future__ import annotations

from bot.views.alfa import leaderboard
from serving.schemas import LeaderboardPage, LeaderboardRow


def _row(rank: int, flags: list[str], anomaly: bool) -> LeaderboardRow:
    return LeaderboardRow(
        rank=rank,
        trader="0x" + f"{rank:x}" * 40,
        score=0.5,
        p_win_7d=0.55,
        net_pnl_usdc=-1_234_567,
        psr=0.9,
        dsr=0.6,
        min_trl_days=10.0,
        trades=50,
        archetype="Risk Manager",
        flags=flags,
        anomaly=anomaly,
        eligible=True,
    )


def test_leaderboard_names_flags_and_marks_outliers() -> None:
    rows = [_row(1, [], False), _row(2, ["wash_trading", "loss_hiding"], True), _row(3, [], True)]
    text = leaderboard(
        LeaderboardPage(as_of=1_700_000_000, sort="score", page=1, page_size=10, total=3, rows=rows)
    )
    first, rest = text.split("<b>1.</b>")[1].split("<b>2.</b>")
    second, third = rest.split("<b>3.</b>")
    assert "🚩" not in first
    assert "Flagged (wash trading, loss hiding)" in second
    assert "Unusual record" in third and "Flagged" not in third
    assert "-1.234567 USDC in 30 d" in first
