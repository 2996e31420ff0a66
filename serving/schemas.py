"""What the service answers, typed once for both sides: the BentoML service returns these models
and the client parses its replies into them.

Money is integer micro-USDC (`*_usdc` fields that are ints); model outputs (probabilities,
expected PnL, scores) are floats because they are estimates, not amounts anyone is paid.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

RegimeColor = Literal["green", "yellow", "red"]
Trend = Literal["bullish", "bearish", "neutral"]
LeaderboardSort = Literal["score", "pnl", "psr"]


class ScoreItem(BaseModel):
    """One trader to score: by address (features looked up), or with a feature row of its own."""

    trader: str
    features: dict[str, float | None] | None = None


class TraderScore(BaseModel):
    trader: str
    known: bool  # False: no features for this trader at the service's as-of (no trades): no scores
    score: float | None = None
    p_win_7d: float | None = None
    expected_pnl_7d_usdc: float | None = None
    anomaly: bool | None = None
    anomaly_score: float | None = None
    flags: list[str] = Field(default_factory=list)
    archetype: str | None = None


class Flag(BaseModel):
    code: str
    reason: str  # in words a follower understands


class EquityPoint(BaseModel):
    ts: int  # unix seconds of a realized close
    equity_usdc: int  # cumulative realized PnL after it, micro-USDC


class TraderStats(BaseModel):
    window_days: int
    trades: int
    volume_usdc: int
    net_pnl_usdc: int
    win_rate: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown_usdc: int
    avg_leverage: float | None
    avg_hold_seconds: float | None
    pairs_traded: int
    last_activity: int | None
    eligible: bool


class Skill(BaseModel):
    psr: float | None
    dsr: float | None
    min_trl_days: float | None
    bootstrap_p: float | None


class Forecast(BaseModel):
    p_win_7d: float | None
    expected_pnl_7d_usdc: float | None


class TraderCard(BaseModel):
    trader: str
    as_of: int
    rank: int | None  # position among all traders scored (as `vanta analyze` ranks them)
    score: float | None
    stats: TraderStats | None  # None: no close in the window
    skill: Skill
    forecast: Forecast
    anomaly: bool
    anomaly_score: float | None
    flags: list[Flag]
    archetype: str | None
    equity_curve: list[EquityPoint]
    models: dict[str, str]  # model name → version that produced these numbers


class LeaderboardRow(BaseModel):
    rank: int
    trader: str
    score: float | None
    p_win_7d: float | None
    net_pnl_usdc: int  # over the stats window (30 days)
    psr: float | None
    dsr: float | None
    min_trl_days: float | None
    trades: int
    archetype: str | None
    flagged: bool
    eligible: bool


class LeaderboardPage(BaseModel):
    as_of: int
    sort: LeaderboardSort
    page: int
    page_size: int
    total: int  # rows that pass the filters, over all pages
    rows: list[LeaderboardRow]


class RegimeState(BaseModel):
    pair: str
    color: RegimeColor
    volatility_1h: float | None
    trend: Trend
    confidence: float  # the filtered probability of the color shown
    as_of: int  # end of the last completed hour of prices the model saw
    model: str  # the regime model's version
    probabilities: dict[str, float] = Field(default_factory=dict)  # green / yellow / red


class Opportunity(BaseModel):
    trader: str
    pair: str
    regime: RegimeColor
    score: float | None
    p_win_7d: float
    archetype: str | None
    reason: str


class Health(BaseModel):
    ready: bool
    models: dict[str, str]  # loaded model name → version
    data_as_of: int | None  # latest trade event the features saw
    data_age_s: float | None
    features_computed_at: int | None
    regime_as_of: int | None
    traders: int
    problems: list[str] = Field(default_factory=list)  # why not ready, in words
