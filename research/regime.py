"""Market regime per pair, filtered only (each hour's answer uses that hour and the past, never the
future), from two model families; `research.pipeline.train_regime` picks one on a validation period.

- `RegimeModel`, a Gaussian hidden Markov model (hmmlearn): volatility clusters and switches between
  calm and stressed spells; an HMM learns those spells and their persistence, and its filtered
  state probability is a natural confidence. Its states are ordered by their mean volatility and
  mapped to green (calmest), yellow, red (most volatile).
- `QuantileRegime`, learned quantile thresholds on the 24-hour volatility relative to the pair's
  usual level (33rd and 80th percentiles of the training hours); its confidence is the probability,
  calibrated on the training period's day-to-day changes, that the band shown still holds a day on.

Observations per hour t, from 15-minute candles up to t, each relative to the pair's usual
volatility (the median 24-hour volatility of the past 30 days), so one model serves every pair:
- log of the 1-hour realized volatility (the last four 15-minute log returns),
- log of the 24-hour realized volatility (what the hour sits in).
4-hour momentum (the 4-hour log return over the 24-hour volatility scaled to 4 hours) sets the
trend, not the state: as an HMM input its fat tails made states that told momentum spells apart
instead of volatility regimes. Funding rates are not used: they exist for BTC only here and would
make pairs incomparable.

Trend: bullish when 4-hour momentum exceeds +0.5 (in 4-hour standard deviations), bearish below
-0.5, else neutral. Copy-timing signal: green → copy, yellow → reduce size, red → pause opens.

The evaluation holds out the most recent period: forward 24-hour realized volatility in red
hours against green hours (a ratio, with a block-bootstrap interval over days).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np
import polars as pl
from hmmlearn.hmm import GaussianHMM

COLORS = ("green", "yellow", "red")
SIGNALS = {"green": "copy", "yellow": "reduce", "red": "pause"}
BARS_PER_HOUR = 4
HOURS_PER_YEAR = 24 * 365
TREND_Z = 0.5
NORM_HOURS = 24 * 30
MIN_FILLED_HOURS_SHARE = 0.5  # event-derived bars need a fill in at least half of the hours
MIN_TRAIN_HOURS = 24 * 60  # two months of hours (after the 30-day warm-up) to fit three states


class RegimeError(ValueError):
    pass


def hourly_observations(candles: pl.DataFrame) -> pl.DataFrame:
    """Hourly rows (ts = end of the hour, epoch seconds) with vol_1h, vol_24h (annualized) and
    mom_4h, from 15-minute candles with `date` (datetime) or `ts` (epoch seconds of the bar open)
    and `close`. Rows are produced once 24 hours of bars, and a week of volatility for `vol_norm`, are behind them."""
    if "ts" not in candles.columns:
        candles = candles.with_columns(ts=pl.col("date").dt.epoch("s"))
    bars = candles.select("ts", "close").sort("ts").with_columns(r=pl.col("close").log().diff())
    bars = bars.with_columns(
        rv1=(pl.col("r") ** 2).rolling_sum(BARS_PER_HOUR),
        rv24=(pl.col("r") ** 2).rolling_sum(24 * BARS_PER_HOUR),
        r4h=pl.col("close").log() - pl.col("close").log().shift(4 * BARS_PER_HOUR),
    )
    # A bar's ts is its open; the hour ends when the fourth bar of it closes.
    hourly = bars.filter(((pl.col("ts") + 900) % 3600) == 0).with_columns(ts=pl.col("ts") + 900)
    ann = np.sqrt(HOURS_PER_YEAR)
    out = hourly.drop_nulls(["rv24", "r4h", "rv1"]).select(
        "ts",
        "close",
        vol_1h=pl.col("rv1").sqrt() * ann,
        vol_24h=(pl.col("rv24") / 24).sqrt() * ann,
        mom_4h=pl.col("r4h") / ((pl.col("rv24") / 24 * 4).sqrt() + 1e-12),
    )
    # The pair's own usual volatility (median of the past 30 days, this hour included): makes the
    # states comparable across pairs whose normal volatility differs (ETH runs hotter than BTC).
    return out.with_columns(
        vol_norm=pl.col("vol_24h").rolling_median(NORM_HOURS, min_samples=NORM_HOURS // 4)
    ).filter(pl.all_horizontal(pl.col("vol_1h", "vol_24h", "mom_4h", "vol_norm").is_finite()))


def _obs_matrix(obs: pl.DataFrame) -> np.ndarray:
    norm = obs["vol_norm"].to_numpy() + 1e-4
    return np.column_stack(
        [
            np.log((obs["vol_1h"].to_numpy() + 1e-4) / norm),
            np.log((obs["vol_24h"].to_numpy() + 1e-4) / norm),
        ]
    )


@dataclass
class RegimeModel:
    """A fitted HMM with its states mapped to colors, and the training window."""

    startprob: np.ndarray
    transmat: np.ndarray
    means: np.ndarray  # states × observations
    variances: np.ndarray  # states × observations (diagonal covariance)
    state_colors: list[str]
    train_start: int
    train_end: int
    name: str = "hmm3"

    @classmethod
    def fit(cls, observations: list[pl.DataFrame], *, seed: int = 0) -> RegimeModel:
        """Fit one HMM on the hourly observations of one or more pairs (each a separate sequence)."""
        parts = _training_parts(observations)
        x = np.vstack([_obs_matrix(o) for o in parts])
        hmm = GaussianHMM(n_components=3, covariance_type="diag", n_iter=100, random_state=seed, tol=1e-3)
        hmm.fit(x, lengths=[o.height for o in parts])
        order = np.argsort(hmm.means_[:, -1])  # by mean 24-hour volatility (the last observation)
        colors = [""] * 3
        for rank, state in enumerate(order):
            colors[state] = COLORS[rank]
        variances = np.array([np.diag(c) for c in hmm.covars_])
        return cls(
            startprob=hmm.startprob_.copy(),
            transmat=hmm.transmat_.copy(),
            means=hmm.means_.copy(),
            variances=variances,
            state_colors=colors,
            train_start=int(min(o["ts"].min() for o in parts)),
            train_end=int(max(o["ts"].max() for o in parts)),
        )

    def filtered(self, obs: pl.DataFrame) -> np.ndarray:
        """P(state at hour t | observations up to t), hours × states: the forward algorithm only."""
        x = _obs_matrix(obs)
        loglik = -0.5 * (
            ((x[:, None, :] - self.means[None]) ** 2 / self.variances[None]).sum(-1)
            + np.log(2 * np.pi * self.variances).sum(-1)[None]
        )
        probs = np.empty_like(loglik)
        alpha = self.startprob
        for t in range(len(x)):
            prior = alpha if t == 0 else alpha @ self.transmat
            lik = np.exp(loglik[t] - loglik[t].max())
            post = prior * lik
            alpha = post / post.sum()
            probs[t] = alpha
        return probs

    def classify(self, obs: pl.DataFrame) -> pl.DataFrame:
        """Per hour: color, confidence (the filtered probability of the color shown), trend, signal."""
        if obs.is_empty():
            return _with_colors(obs, np.zeros(0, dtype=int), np.zeros((0, 3)))
        p = self.filtered(obs)
        color_p = np.column_stack(
            [p[:, [s for s, c in enumerate(self.state_colors) if c == k]].sum(1) for k in COLORS]
        )
        return _with_colors(obs, color_p.argmax(1), color_p)

    def describe(self) -> dict[str, object]:
        return {"state_colors": self.state_colors}


@dataclass
class QuantileRegime:
    """Learned quantile thresholds on the 24-hour volatility relative to the pair's usual level
    (vol_24h / vol_norm): green up to its 33rd percentile on the training hours, red above its
    80th, yellow between. No state and no smoothing: an hour's color reads that hour's row only.

    Confidence (filtered, calibrated on the training period): how likely the band shown still holds
    24 hours on, the horizon the regime is judged on. On the training hours we keep the 24-hour
    changes of the log relative volatility (x[t+24 h] - x[t], same pair), summarized by their
    quantiles; at hour t, p_red = the share of those changes that would carry x[t] above the red
    threshold, p_green = the share that would keep it at or below the yellow one, p_yellow the rest.
    It is a distance to the thresholds measured in how far that volatility usually moves in a day:
    an hour deep inside its band gets ~1, one next to a threshold ~0.5. Only hour t's own value
    enters at classification (the future of the training period enters only the calibration, as it
    enters the HMM's fit). confidence = the probability of the color shown."""

    yellow_above: float
    red_above: float
    # Quantiles of the training period's 24-hour changes of log(vol_24h / vol_norm).
    day_changes: np.ndarray = field(repr=False)
    train_start: int
    train_end: int
    name: str = "vol_quantiles"

    LOW_Q: ClassVar[float] = 0.33
    HIGH_Q: ClassVar[float] = 0.80

    @classmethod
    def fit(cls, observations: list[pl.DataFrame], *, seed: int = 0) -> QuantileRegime:
        """`seed` is unused (nothing is random here): the signature every family shares."""
        parts = _training_parts(observations)
        v = np.concatenate([_relative_vol(o) for o in parts])
        changes = np.concatenate([_day_changes(o) for o in parts])
        if changes.size == 0:
            raise RegimeError("no two training hours 24 hours apart to calibrate the confidence on")
        return cls(
            yellow_above=float(np.quantile(v, cls.LOW_Q)),
            red_above=float(np.quantile(v, cls.HIGH_Q)),
            day_changes=np.quantile(changes, np.linspace(0, 1, 201)),
            train_start=int(min(o["ts"].min() for o in parts)),
            train_end=int(max(o["ts"].max() for o in parts)),
        )

    def probabilities(self, obs: pl.DataFrame) -> np.ndarray:
        """hours × (green, yellow, red): P(band 24 hours on | this hour's relative volatility)."""
        x = np.log(_relative_vol(obs))[:, None]
        d = self.day_changes[None, :]
        green = (x + d <= np.log(self.yellow_above)).mean(1)
        red = (x + d > np.log(self.red_above)).mean(1)
        return np.column_stack([green, np.clip(1 - green - red, 0, 1), red])

    def classify(self, obs: pl.DataFrame) -> pl.DataFrame:
        """Per hour: color (the band of this hour's relative volatility), confidence (its
        probability of holding 24 hours on), p_green/p_yellow/p_red, trend, signal."""
        v = _relative_vol(obs)
        color = np.where(v > self.red_above, 2, np.where(v > self.yellow_above, 1, 0))
        p = self.probabilities(obs) if obs.height else np.zeros((0, 3))
        return _with_colors(obs, color, p)

    def describe(self) -> dict[str, object]:
        return {
            "yellow_above": self.yellow_above,
            "red_above": self.red_above,
            "quantiles": [self.LOW_Q, self.HIGH_Q],
        }


class Regime(Protocol):
    """What serving, the CLI and the backtest guard use of a fitted regime model (either family)."""

    name: str
    train_start: int
    train_end: int

    def classify(self, obs: pl.DataFrame) -> pl.DataFrame: ...

    def describe(self) -> dict[str, object]: ...


FAMILIES: dict[str, type[RegimeModel] | type[QuantileRegime]] = {
    "hmm": RegimeModel,
    "vol_quantiles": QuantileRegime,
}
FAMILY_NAMES = {"hmm": "Gaussian HMM, filtered", "vol_quantiles": "learned volatility quantiles"}


def _training_parts(observations: list[pl.DataFrame]) -> list[pl.DataFrame]:
    """The non-empty sequences to fit on, or a RegimeError saying how much history is needed."""
    parts = [o for o in observations if o.height]
    total = sum(o.height for o in parts)
    if total < MIN_TRAIN_HOURS:
        raise RegimeError(
            f"{total} hours of prices; the regime model needs at least {MIN_TRAIN_HOURS} ({MIN_TRAIN_HOURS // 24} days)"
        )
    return parts


def _relative_vol(obs: pl.DataFrame) -> np.ndarray:
    return (obs["vol_24h"] / obs["vol_norm"]).to_numpy()


def _day_changes(obs: pl.DataFrame) -> np.ndarray:
    """x[t + 24 h] - x[t] of x = log relative volatility, for the hours that have the one a day on."""
    x = obs.select("ts", x=pl.col("vol_24h").truediv(pl.col("vol_norm")).log())
    later = x.select(ts=pl.col("ts") - 24 * 3600, x_later="x")
    return x.join(later, on="ts").select(pl.col("x_later") - pl.col("x")).to_series().to_numpy()


def _with_colors(obs: pl.DataFrame, color: np.ndarray, p: np.ndarray) -> pl.DataFrame:
    """The classified frame both families return: color index per hour and its probabilities."""
    return _with_trend(
        obs.with_columns(
            color=pl.Series(np.array(COLORS)[color], dtype=pl.Utf8),
            confidence=pl.Series(p[np.arange(len(color)), color], dtype=pl.Float64),
            p_green=pl.Series(p[:, 0], dtype=pl.Float64),
            p_yellow=pl.Series(p[:, 1], dtype=pl.Float64),
            p_red=pl.Series(p[:, 2], dtype=pl.Float64),
        )
    )


def _with_trend(frame: pl.DataFrame) -> pl.DataFrame:
    m = pl.col("mom_4h")
    return frame.with_columns(
        trend=pl.when(m > TREND_Z)
        .then(pl.lit("bullish"))
        .when(m < -TREND_Z)
        .then(pl.lit("bearish"))
        .otherwise(pl.lit("neutral")),
        signal=pl.col("color").replace_strict(SIGNALS, default=None),
    )


def forward_volatility(obs: pl.DataFrame, hours: int = 24) -> pl.DataFrame:
    """Realized volatility over the next `hours` hours (annualized), from the hourly vol_1h series:
    what the regime at hour t should have warned about. Null where the future is not in the data."""
    var1 = (pl.col("vol_1h") ** 2) / HOURS_PER_YEAR
    fwd = var1.reverse().rolling_sum(hours).reverse().shift(-1)
    return obs.sort("ts").with_columns(fwd_vol_24h=(fwd / hours * HOURS_PER_YEAR).sqrt())


def red_green_ratio(classified: pl.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> dict[str, float | int]:
    """Mean forward 24-hour volatility in red hours over that in green hours, with a bootstrap
    interval that resamples whole days (hours within a day are not independent)."""
    c = forward_volatility(classified).drop_nulls("fwd_vol_24h").with_columns(day=pl.col("ts") // 86_400)
    red = c.filter(pl.col("color") == "red")
    green = c.filter(pl.col("color") == "green")
    out: dict[str, float | int] = {
        "red_hours": red.height,
        "green_hours": green.height,
        "yellow_hours": c.filter(pl.col("color") == "yellow").height,
    }
    if red.is_empty() or green.is_empty():
        return {**out, "ratio": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    # group_by's order varies from run to run; the bootstrap must draw the same days for a seed.
    by_day = (
        c.group_by("day")
        .agg(
            red_sum=pl.col("fwd_vol_24h").filter(pl.col("color") == "red").sum(),
            red_n=(pl.col("color") == "red").sum(),
            green_sum=pl.col("fwd_vol_24h").filter(pl.col("color") == "green").sum(),
            green_n=(pl.col("color") == "green").sum(),
        )
        .sort("day")
    )
    arr = by_day.select("red_sum", "red_n", "green_sum", "green_n").to_numpy().astype(float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(arr), (n_boot, len(arr)))
    s = arr[idx].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = (s[:, 0] / s[:, 1]) / (s[:, 2] / s[:, 3])
    ratios = ratios[np.isfinite(ratios)]
    point = float(red["fwd_vol_24h"].mean() / green["fwd_vol_24h"].mean())
    return {
        **out,
        "ratio": point,
        "ci_low": float(np.percentile(ratios, 2.5)),
        "ci_high": float(np.percentile(ratios, 97.5)),
        "red_fwd_vol": float(red["fwd_vol_24h"].mean()),
        "green_fwd_vol": float(green["fwd_vol_24h"].mean()),
    }


def bars_from_events(events: pl.DataFrame, pair_index: int) -> pl.DataFrame:
    """15-minute closes (ts = bar open) from the prices the events of one pair reveal, carried
    forward over bars without a fill: the regime's input when no candle file covers the period.
    Empty when fewer than half of the hours hold a fill."""
    e = events.filter((pl.col("pair_index") == pair_index) & pl.col("price_e10").is_not_null())
    if e.is_empty():
        return pl.DataFrame(schema={"ts": pl.Int64, "close": pl.Float64})
    e = e.select(bar=(pl.col("ts") // 900) * 900, ts=pl.col("ts"), price=pl.col("price_e10") / 1e10)
    last = e.sort("ts").group_by("bar").agg(close=pl.col("price").last())
    hours = (int(last["bar"].max()) - int(last["bar"].min())) / 3600 + 1
    if last.select((pl.col("bar") // 3600).n_unique()).item() < MIN_FILLED_HOURS_SHARE * hours:
        # Too sparse: carried-forward prices would show calm that nobody measured.
        return pl.DataFrame(schema={"ts": pl.Int64, "close": pl.Float64})
    grid = pl.DataFrame({"ts": np.arange(int(last["bar"].min()), int(last["bar"].max()) + 1, 900)})
    return grid.join(last.rename({"bar": "ts"}), on="ts", how="left").with_columns(
        pl.col("close").forward_fill()
    )
