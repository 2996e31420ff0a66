"""The 7-day forecast and the copyability model, trained and judged walk-forward against baselines.

Panel: weekly as-of dates; at each, every trader's point-in-time features (`research.features`)
and what followed in the next 7 days (labels). Three supervised models, all LightGBM:

- win: P(the trader's net realized PnL over the next 7 days > 0), calibrated (Platt)
  → `p_win_7d`. The seed's RandomForest is fitted beside it for comparison.
- pnl: the next 7 days' net PnL in USDC (fitted on asinh(pnl / 100) so a few whales do not own
  the fit) → `expected_pnl_7d_usdc`.
- copy: P(a follower copying the trader's positions opened in the next 7 days, at fixed
  collateral, ends the week ahead) → the copyability score.

Walk-forward: to predict at as-of date j, train only on dates whose 7-day label window ended by j
(`as_of + 7 d ≤ as_of_j`), predict date j, roll. Baselines rank by one statistic each: 30-day
PnL, win rate, PSR, and random. Every comparison is on the same out-of-sample rows, with paired
bootstrap confidence intervals.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from lightgbm import LGBMClassifier, LGBMRegressor
from scipy import stats as st
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import brier_score_loss, roc_auc_score

from research import anomaly
from research import features as F

HORIZON_DAYS = 7
WARMUP_DAYS = 14  # the first as-of date: features need some record behind them
MIN_TRAIN_DATES = 2
MIN_TRAIN_ROWS = 200
MIN_CLASS_ROWS = 20
BASELINES = ("pnl_30d", "win_rate", "psr", "random")
PNL_SCALE = 100.0  # USDC: asinh(pnl / 100) is linear below ~100 USDC, logarithmic above


class HistoryTooShort(ValueError):
    """Not enough history to train or evaluate; the message says how much is needed."""


def as_of_dates(
    trades: pl.DataFrame, *, horizon_days: int = HORIZON_DAYS, end: int | None = None
) -> list[int]:
    """Weekly as-of dates from WARMUP_DAYS after the first close to `end` (default: last close),
    aligned to whole days after the first close."""
    if trades.is_empty():
        return []
    first = int(trades["ts"].min())
    last = int(trades["ts"].max()) + 1 if end is None else end
    start = first - first % F.DAY + (WARMUP_DAYS + 1) * F.DAY
    return list(range(start, last + 1, horizon_days * F.DAY))


def build_panel(
    trades: pl.DataFrame,
    dates: list[int],
    *,
    positions: pl.DataFrame | None = None,
    prices: pl.DataFrame | None = None,
    horizon_days: int = HORIZON_DAYS,
    n_boot: int = 200,
) -> pl.DataFrame:
    """Features at each date with the next `horizon_days` outcomes (0 when the trader did not
    trade); `label_complete` says whether the label window ended before the data did."""
    data_end = int(trades["ts"].max()) + 1 if trades.height else 0
    parts = []
    for t in dates:
        feats = F.trader_features(trades, t, positions=positions, prices=prices, n_boot=n_boot)
        if feats.is_empty():
            continue
        fwd = F.forward_outcomes(trades, t, horizon_days)
        parts.append(
            feats.join(fwd, on="trader", how="left").with_columns(
                pl.col("pnl_fwd").fill_null(0.0),
                pl.col("trades_fwd").fill_null(0).cast(pl.Int64),
                pl.col("copy_roc_fwd").fill_null(0.0),
                pl.col("copy_trades_fwd").fill_null(0).cast(pl.Int64),
                as_of=pl.lit(t, pl.Int64),
                label_complete=pl.lit(t + horizon_days * F.DAY <= data_end),
            )
        )
    return pl.concat(parts) if parts else pl.DataFrame()


def _lgbm_classifier(seed: int) -> LGBMClassifier:
    return LGBMClassifier(
        n_estimators=150,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=20,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        random_state=seed,
        n_jobs=1,
        verbose=-1,
    )


def _x(frame: pl.DataFrame) -> np.ndarray:
    return np.nan_to_num(frame.select(F.FEATURES).to_numpy().astype(float), nan=0.0, posinf=0.0, neginf=0.0)


def _calibrated(x: np.ndarray, y: np.ndarray, seed: int) -> CalibratedClassifierCV:
    # Platt scaling, not isotonic: it is monotone in the model's own score, so a ranking keeps all of
    # the model's order (isotonic steps tie whole groups of traders at one probability).
    method = "sigmoid"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # feature-name warnings from lightgbm
        return CalibratedClassifierCV(_lgbm_classifier(seed), method=method, cv=3, ensemble=False).fit(x, y)


@dataclass
class Forecaster:
    """The three supervised models, fitted on one training panel."""

    win: CalibratedClassifierCV
    pnl: LGBMRegressor
    copy: CalibratedClassifierCV
    features: list[str] = field(default_factory=lambda: list(F.FEATURES))

    @classmethod
    def fit(cls, panel: pl.DataFrame, *, seed: int = 0) -> Forecaster:
        check_trainable(panel)
        x = _x(panel)
        y_win = (panel["pnl_fwd"].to_numpy() > 0).astype(int)
        copy_rows = panel["copy_trades_fwd"].to_numpy() > 0
        y_copy = (panel["copy_roc_fwd"].to_numpy()[copy_rows] > 0).astype(int)
        pnl = LGBMRegressor(
            n_estimators=150,
            learning_rate=0.05,
            num_leaves=15,
            min_child_samples=20,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            random_state=seed,
            n_jobs=1,
            verbose=-1,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pnl.fit(x, np.arcsinh(panel["pnl_fwd"].to_numpy() / PNL_SCALE))
        return cls(_calibrated(x, y_win, seed), pnl, _calibrated(x[copy_rows], y_copy, seed + 1))

    def predict(self, features: pl.DataFrame) -> pl.DataFrame:
        x = _x(features)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return pl.DataFrame(
                {
                    "trader": features["trader"],
                    "p_win_7d": self.win.predict_proba(x)[:, 1],
                    "expected_pnl_7d_usdc": np.sinh(self.pnl.predict(x)) * PNL_SCALE,
                    "p_copy_win": self.copy.predict_proba(x)[:, 1],
                }
            )


def check_trainable(panel: pl.DataFrame) -> None:
    """Raise HistoryTooShort, saying what is missing, when a panel cannot train the models."""
    dates = panel["as_of"].n_unique() if panel.height else 0
    rows = panel.height
    wins = int((panel["pnl_fwd"] > 0).sum()) if rows else 0
    copy_rows = panel.filter(pl.col("copy_trades_fwd") > 0) if rows else panel
    copy_pos = int((copy_rows["copy_roc_fwd"] > 0).sum()) if rows else 0
    problems = []
    if rows < MIN_TRAIN_ROWS:
        problems.append(f"{rows} labelled trader-weeks (need {MIN_TRAIN_ROWS})")
    if min(wins, rows - wins) < MIN_CLASS_ROWS:
        problems.append(
            f"{min(wins, rows - wins)} in the rarer of winning/losing weeks (need {MIN_CLASS_ROWS})"
        )
    if min(copy_pos, copy_rows.height - copy_pos) < MIN_CLASS_ROWS:
        problems.append(
            f"{min(copy_pos, copy_rows.height - copy_pos)} in the rarer of winning/losing copied weeks "
            f"(need {MIN_CLASS_ROWS})"
        )
    if problems:
        raise HistoryTooShort(
            f"history too short to train: {dates} weekly as-of date(s) with complete 7-day labels, "
            + "; ".join(problems)
            + f". Training needs at least {WARMUP_DAYS + HORIZON_DAYS * (MIN_TRAIN_DATES + 1)} days of "
            f"closed trades from enough traders for {MIN_TRAIN_ROWS} trader-weeks"
        )


@dataclass
class WalkForward:
    """Out-of-sample predictions of every model and baseline, one row per (as_of, trader)."""

    predictions: pl.DataFrame
    folds: int
    train_dates: list[int]


def walk_forward(
    panel: pl.DataFrame, *, seed: int = 0, min_train_dates: int = MIN_TRAIN_DATES
) -> WalkForward:
    """Train on every date whose label is complete by date j, predict j; for each j in turn."""
    dates = sorted(panel["as_of"].unique().to_list())
    rng = np.random.default_rng(seed)
    out = []
    used_dates: list[int] = []
    for t in dates:
        train = panel.filter(pl.col("label_complete") & (pl.col("as_of") + HORIZON_DAYS * F.DAY <= t))
        test = panel.filter((pl.col("as_of") == t) & pl.col("label_complete"))
        if train["as_of"].n_unique() < min_train_dates or test.is_empty():
            continue
        try:
            model = Forecaster.fit(train, seed=seed)
        except HistoryTooShort:
            continue
        rf = RandomForestClassifier(n_estimators=100, min_samples_leaf=10, random_state=seed, n_jobs=1)
        rf.fit(_x(train), (train["pnl_fwd"].to_numpy() > 0).astype(int))
        pred = model.predict(test)
        flagged = anomaly.flag_frame(test)["flags"].list.len().to_numpy() > 0
        out.append(
            test.select(
                "as_of",
                "trader",
                "trades",
                "pnl_fwd",
                "trades_fwd",
                "copy_roc_fwd",
                "copy_trades_fwd",
                *BASELINES[:-1],
            ).with_columns(
                p_win_7d=pred["p_win_7d"],
                expected_pnl_7d_usdc=pred["expected_pnl_7d_usdc"],
                p_copy_win=pred["p_copy_win"],
                # The leaderboard's order: flagged traders after every unflagged one.
                ai_score=pl.Series(pred["p_copy_win"].to_numpy() * 100 - 1000 * flagged),
                flagged=pl.Series(flagged),
                p_win_rf=rf.predict_proba(_x(test))[:, 1],
                random=pl.Series(rng.random(test.height)),
            )
        )
        used_dates.append(t)
    if not out:
        raise HistoryTooShort(
            f"history too short to evaluate walk-forward: {len(dates)} weekly as-of date(s); needs "
            f"{min_train_dates} training dates with complete labels before a test date, i.e. at least "
            f"{WARMUP_DAYS + HORIZON_DAYS * (min_train_dates + 1)} days of closed trades"
        )
    return WalkForward(pl.concat(out), len(out), used_dates)


# -- metrics with paired bootstrap confidence intervals -------------------------------------------


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def _auc_rows(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """AUC of each row (resample) of 2-D `y` (0/1) and `s`, from ranks (Mann–Whitney U)."""
    ranks = st.rankdata(s, axis=1)
    n1 = y.sum(axis=1)
    n0 = y.shape[1] - n1
    u = (ranks * y).sum(axis=1) - n1 * (n1 + 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((n1 > 0) & (n0 > 0), u / (n1 * n0), np.nan)


def _spearman_rows(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of 2-D `y` and `s` (Pearson of the ranks)."""
    a = st.rankdata(y, axis=1)
    b = st.rankdata(s, axis=1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def _interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return float("nan"), float("nan")
    lo, hi = np.percentile(draws, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


def compare(
    preds: pl.DataFrame,
    target: str,
    candidates: list[str],
    *,
    metric: str = "auc",
    seed: int = 0,
    n_boot: int = 500,
) -> pl.DataFrame:
    """Each candidate score column against the binary (auc) or continuous (spearman) target,
    with its 95 % bootstrap interval, and its paired difference to the first candidate (the model):
    every candidate is scored on the same resampled rows, so the difference's interval is paired."""
    y = preds[target].to_numpy().astype(float)
    n = len(y)
    rows_fn = _auc_rows if metric == "auc" else _spearman_rows
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n)) if n else np.zeros((1, 0), dtype=int)
    full = np.arange(n)[None, :]
    yb, y1 = y[idx], y[full]
    scores = {c: preds[c].to_numpy().astype(float) for c in candidates}
    point = {c: float(rows_fn(y1, s[full])[0]) if n > 2 else float("nan") for c, s in scores.items()}
    boots = {c: rows_fn(yb, s[idx]) for c, s in scores.items()}
    model = candidates[0]
    out = []
    for c in candidates:
        lo, hi = _interval(boots[c])
        dlo, dhi = _interval(boots[model] - boots[c])
        out.append(
            {
                "score": c,
                "metric": metric,
                "value": point[c],
                "ci_low": lo,
                "ci_high": hi,
                "model_minus_this": point[model] - point[c],
                "diff_ci_low": dlo,
                "diff_ci_high": dhi,
                "n": n,
            }
        )
    return pl.DataFrame(out)


def forecast_report(wf: WalkForward, *, seed: int = 0) -> dict[str, pl.DataFrame | float]:
    """The walk-forward verdict: win forecast (AUC, Brier), PnL forecast (Spearman), copy model
    (AUC on copied weeks), each beside the baselines."""
    p = wf.predictions.with_columns(win=(pl.col("pnl_fwd") > 0).cast(pl.Int8))
    copied = p.filter(pl.col("copy_trades_fwd") > 0).with_columns(
        copy_win=(pl.col("copy_roc_fwd") > 0).cast(pl.Int8)
    )
    win = compare(p, "win", ["p_win_7d", "p_win_rf", *BASELINES], seed=seed)
    pnl = compare(p, "pnl_fwd", ["expected_pnl_7d_usdc", *BASELINES], metric="spearman", seed=seed)
    copy = compare(copied, "copy_win", ["p_copy_win", *BASELINES], seed=seed)
    y, prob = p["win"].to_numpy(), p["p_win_7d"].to_numpy()
    return {
        "win_auc": win,
        "pnl_spearman": pnl,
        "copy_auc": copy,
        "brier": float(brier_score_loss(y, prob)),
        "brier_base_rate": float(brier_score_loss(y, np.full(len(y), y.mean()))),
        "reliability": reliability(y, prob),
    }


def reliability(y: np.ndarray, prob: np.ndarray, bins: int = 10) -> pl.DataFrame:
    """Mean predicted probability against the observed frequency, per probability decile."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(prob, edges) - 1, 0, bins - 1)
    rows = [
        {
            "bin": b,
            "predicted": float(prob[which == b].mean()),
            "observed": float(y[which == b].mean()),
            "n": int((which == b).sum()),
        }
        for b in range(bins)
        if (which == b).any()
    ]
    return pl.DataFrame(rows)


def beats_baselines(table: pl.DataFrame) -> tuple[bool, str]:
    """The registration rule: the model's paired difference to every baseline has a 95 % CI above
    zero. Returns the verdict and the sentence that explains it, with numbers."""
    model = table.row(0, named=True)
    base = table.filter(pl.col("score").is_in(BASELINES))
    worst = base.sort("diff_ci_low").row(0, named=True)
    ok = (
        all(v > 0 for v in base["diff_ci_low"].to_list() if v is not None and np.isfinite(v))
        and base.height > 0
    )
    verdict = "beats" if ok else "does not beat"
    return ok, (
        f"{model['score']} {model['metric']} {model['value']:.3f} [{model['ci_low']:.3f}, {model['ci_high']:.3f}] "
        f"{verdict} every baseline: closest is {worst['score']} at {worst['value']:.3f}, difference "
        f"{worst['model_minus_this']:+.3f} [{worst['diff_ci_low']:+.3f}, {worst['diff_ci_high']:+.3f}] (n={model['n']})"
    )
