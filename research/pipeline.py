"""The analyzer's and the regime's whole research path, as the CLI, the notebooks and the demo run it:
events → tables → walk-forward panel → verdicts against baselines → fitted models.

Everything takes values (polars frames of canonical events, candle frames) and returns values;
`serving/` reads PostgreSQL and registers what `train_*` says beat its baselines.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats as st

from data.event_frames import EVENT_SCHEMA
from research import anomaly, archetypes, backtest, features, forecast, regime
from research.analyzer import Analyzer, fit_analyzer

ANALYZER_MODEL = "vanta_analyzer"
REGIME_MODEL = "vanta_regime"
PRICE_FILES = {"BTC/USD": "BTC_USDT-15m-futures.feather", "ETH/USD": "ETH_USDT-15m-futures.feather"}
RANKINGS = {
    "ai_score": "AI score",
    "pnl_30d": "30-day PnL",
    "win_rate": "win rate",
    "psr": "PSR",
    "random": "random",
}


@dataclass
class Tables:
    """The research tables of one population: closes, positions, the prices the events reveal."""

    events: pl.DataFrame
    trades: pl.DataFrame
    positions: pl.DataFrame
    prices: pl.DataFrame

    @classmethod
    def from_events(cls, events: pl.DataFrame, *, before: int | None = None) -> Tables:
        if before is not None:
            events = events.filter(pl.col("ts") < before)
        return cls(
            events,
            features.trade_table(events),
            features.position_table(events),
            features.pair_prices(events),
        )

    def features_at(self, as_of: int) -> pl.DataFrame:
        return features.trader_features(self.trades, as_of, positions=self.positions, prices=self.prices)


def events_from_snapshot(frame: pl.DataFrame) -> pl.DataFrame:
    """Canonical event columns from either snapshot layout: the simulator's (integers of 1e-10,
    epoch seconds) or PostgreSQL's `trade_events` as `vanta snapshot` writes it (decimals, timestamps)."""
    if "leverage_e10" in frame.columns:
        return frame.select(list(EVENT_SCHEMA)).cast(EVENT_SCHEMA)  # type: ignore[arg-type]

    def e10(name: str) -> pl.Expr:
        if name not in frame.columns:
            return pl.lit(None, pl.Int64)
        return (pl.col(name).cast(pl.Float64) * 1e10).round().cast(pl.Int64)

    ts = pl.col("ts")
    ts_epoch = ts.dt.epoch("s") if frame.schema["ts"] != pl.Int64 else ts
    return frame.select(
        event_id=pl.col("event_id"),
        venue=pl.col("venue"),
        source=pl.col("source"),
        trader=pl.col("trader"),
        pair_index=pl.col("pair_index").cast(pl.Int32),
        pair=pl.col("pair"),
        kind=pl.col("kind"),
        trade_index=pl.col("trade_index").cast(pl.Int32),
        open_ts=pl.col("open_ts").cast(pl.Int64),
        ts=ts_epoch.cast(pl.Int64),
        side=pl.col("side"),
        collateral_usdc=pl.col("collateral_usdc").cast(pl.Int64),
        leverage_e10=e10("leverage"),
        price_e10=e10("price"),
        size_closed_usdc=pl.col("size_closed_usdc").cast(pl.Int64),
        open_fee_usdc=pl.col("open_fee_usdc").cast(pl.Int64),
        close_fee_usdc=pl.col("close_fee_usdc").cast(pl.Int64),
        rollover_fee_usdc=pl.col("rollover_fee_usdc").cast(pl.Int64),
        loss_protection_usdc=pl.col("loss_protection_usdc").cast(pl.Int64),
        usdc_sent=pl.col("usdc_sent").cast(pl.Int64),
        gross_pnl_usdc=pl.lit(None, pl.Int64),
        tp_e10=e10("tp"),
        sl_e10=e10("sl"),
    )


def load_snapshot(path: Path) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(events, truth or None) from a DuckDB snapshot."""
    import duckdb

    from data.snapshots import read_table

    with duckdb.connect(str(path), read_only=True) as con:
        names = {r[0] for r in con.sql("SELECT table_name FROM information_schema.tables").fetchall()}
    if "trade_events" not in names:
        raise ValueError(f"{path}: no trade_events table (tables: {', '.join(sorted(names)) or 'none'})")
    events = events_from_snapshot(read_table(path, "trade_events"))
    truth = read_table(path, "truth") if "truth" in names else None
    return events, truth


# -- the analyzer ---------------------------------------------------------------------------------


@dataclass
class AnalyzerOutcome:
    as_of: int
    beats_baseline: bool
    verdict: str
    analyzer: Analyzer | None = None
    walk_forward: forecast.WalkForward | None = None
    report: dict[str, object] = field(default_factory=dict)
    backtest: pl.DataFrame | None = None
    weekly: pl.DataFrame | None = None
    panel_rows: int = 0

    def metrics(self) -> dict[str, object]:
        """JSON-able metrics of the model and of its baselines (ai_model_metadata, bentoml metadata)."""
        if not self.report:
            return {}
        out: dict[str, object] = {}
        for key in ("win_auc", "pnl_spearman", "copy_auc"):
            table = self.report[key]
            assert isinstance(table, pl.DataFrame)
            out[key] = {r["score"]: _round(r) for r in table.iter_rows(named=True)}
        out["brier"] = round(float(self.report["brier"]), 4)  # type: ignore[arg-type]
        out["brier_base_rate"] = round(float(self.report["brier_base_rate"]), 4)  # type: ignore[arg-type]
        if self.backtest is not None:
            out["copy_backtest_top10"] = {
                r["ranking"]: _round(r) for r in self.backtest.iter_rows(named=True)
            }
        return out


def _round(row: dict[str, object]) -> dict[str, object]:
    return {
        k: (round(v, 4) if isinstance(v, float) and np.isfinite(v) else (None if isinstance(v, float) else v))
        for k, v in row.items()
        if k not in ("score", "ranking", "metric")
    }


def train_analyzer(
    events: pl.DataFrame,
    as_of: int,
    *,
    seed: int = 0,
    k: int = 10,
    fee_ppm: dict[int, tuple[int, int]] | None = None,
    n_boot: int = 200,
) -> AnalyzerOutcome:
    """Walk-forward on everything before `as_of`, the verdict against the baselines (the copy
    model's AUC must beat every baseline with a 95 % interval above zero), the copy backtest, and
    — only when it wins — the analyzer fitted on all complete labels. Raises HistoryTooShort."""
    tables = Tables.from_events(events, before=as_of)
    dates = forecast.as_of_dates(tables.trades, end=as_of)
    panel = forecast.build_panel(
        tables.trades, dates, positions=tables.positions, prices=tables.prices, n_boot=n_boot
    )
    if panel.is_empty():
        raise forecast.HistoryTooShort(
            f"history too short to train: {tables.trades.height} closed trades before as-of; training needs "
            f"at least {forecast.WARMUP_DAYS + forecast.HORIZON_DAYS * (forecast.MIN_TRAIN_DATES + 1)} days of them"
        )
    forecast.check_trainable(panel.filter(pl.col("label_complete")))
    wf = forecast.walk_forward(panel, seed=seed)
    report = forecast.forecast_report(wf, seed=seed)
    ok, verdict = forecast.beats_baselines(report["copy_auc"])  # type: ignore[arg-type]
    weekly = copy_backtest_weekly(tables.trades, wf.predictions, k=k, fee_ppm=fee_ppm, seed=seed)
    summary = backtest.summarize(weekly, reference="pnl_30d", seed=seed)
    outcome = AnalyzerOutcome(as_of, ok, verdict, None, wf, report, summary, weekly, panel_rows=panel.height)
    if ok:
        outcome.analyzer = fit_analyzer(panel, tables.features_at(as_of), seed=seed)
    return outcome


def copy_backtest_weekly(
    trades: pl.DataFrame,
    predictions: pl.DataFrame,
    *,
    k: int = 10,
    fee_ppm: dict[int, tuple[int, int]] | None = None,
    blocked: pl.DataFrame | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """Weekly follower PnL of the top K of every ranking (AI score, 30-day PnL, win rate, PSR, random)."""
    copies = backtest.copied_trades(trades, fee_ppm=fee_ppm)
    picks = pl.concat([backtest.top_k(predictions, col, k, ranking=col) for col in RANKINGS])
    return backtest.weekly_copy_pnl(copies, picks, blocked=blocked)


# -- evaluation against a simulator's planted truth (never a feature) ----------------------------


def truth_evaluation(
    outcome: AnalyzerOutcome, tables: Tables, truth: pl.DataFrame, *, min_trades: int = 100
) -> dict[str, object]:
    """Spearman of the AI score with the planted edge among traders with ≥ `min_trades` trades (at
    the last out-of-sample date), next to 30-day PnL's and to the best any score could reach given
    the ties in the truth (most traders share edge 0); anomaly flag recall and false positives on
    the planted loss hiders and wash traders; archetype stability across weekly refits."""
    assert outcome.walk_forward is not None
    preds = outcome.walk_forward.predictions
    last = preds.filter(pl.col("as_of") == preds["as_of"].max())
    j = last.join(truth.select("trader", "edge", "archetype"), on="trader").filter(
        pl.col("trades") >= min_trades
    )
    edge = j["edge"].to_numpy()
    out: dict[str, object] = {"traders_min_trades": j.height, "min_trades": min_trades}
    for col in ("ai_score", "p_copy_win", "pnl_30d", "psr", "win_rate"):
        out[f"spearman_edge_{col}"] = (
            float(st.spearmanr(j[col].to_numpy(), edge).statistic) if j.height > 2 else None
        )
    # The ceiling: a score ordering everyone exactly by edge, ties broken arbitrarily.
    oracle = edge + np.random.default_rng(0).random(len(edge)) * 1e-9
    out["spearman_edge_ceiling"] = float(st.spearmanr(oracle, edge).statistic) if j.height > 2 else None
    out["auc_skilled_ai_score"] = (
        float(forecast._auc((edge > 0).astype(int), j["ai_score"].to_numpy())) if j.height > 2 else None
    )
    feats = tables.features_at(int(last["as_of"][0]))
    flags = anomaly.flag_frame(feats)
    labels = truth.select("trader", label=pl.col("archetype"))
    out["anomaly"] = anomaly.detection_rates(
        flags.filter(
            pl.col("trader").is_in(
                feats.filter(pl.col("trades") >= anomaly.MIN_TRADES_FOR_FLAGS)["trader"].implode()
            )
        ),
        labels,
        {"loss_hiding": "loss_hider", "wash_trading": "wash"},
    )
    model = anomaly.AnomalyModel.fit(feats)
    scored = feats.select("trader").with_columns(s=pl.Series(model.score(feats))).join(labels, on="trader")
    planted = scored["label"].is_in(["loss_hider", "wash"]).to_numpy().astype(int)
    out["isolation_forest_auc"] = float(forecast._auc(planted, scored["s"].to_numpy()))
    dates = sorted(preds["as_of"].unique().to_list())
    aris = [
        archetypes.refit_stability(tables.features_at(a), tables.features_at(b))
        for a, b in itertools.pairwise(dates)
    ]
    aris = [a for a in aris if a is not None]
    out["archetype_ari_mean"] = float(np.mean(aris)) if aris else None
    out["archetype_ari_min"] = float(np.min(aris)) if aris else None
    return out


# -- the regime -------------------------------------------------------------------------------------


@dataclass
class RegimeOutcome:
    beats_baseline: bool
    verdict: str
    model: regime.Regime  # the family chosen on validation, refit on train + validation; registered only when it beats the baseline
    holdout: dict[str, dict[str, object]]  # pair → {"hmm": ratio..., "vol_quantiles": ratio...}
    split_ts: int  # the held-out period's first hour
    chosen: str = "hmm"  # the family (a key of regime.FAMILIES) chosen on validation
    validation: dict[str, dict[str, object]] = field(default_factory=dict)  # pair → family → ratio...
    validation_ts: int | None = None  # the validation period's first hour
    backtest: pl.DataFrame | None = None

    def metrics(self) -> dict[str, object]:
        return {
            "holdout_start": self.split_ts,
            "validation_start": self.validation_ts,
            "family": self.chosen,
            "red_green_fwd_vol": self.holdout,
            "validation_red_green_fwd_vol": self.validation,
        }

    def baseline_metrics(self) -> dict[str, object]:
        """The families not chosen, on the held-out period, per pair (the no-regime baseline is 1)."""
        return {p: {f: r for f, r in h.items() if f != self.chosen} for p, h in self.holdout.items()}


def load_candles(
    prices_dir: Path, *, before: int | None = None, last_days: int = 0
) -> dict[str, pl.DataFrame]:
    """The real 15-minute candles beside the project, by pair symbol (those present): those before
    `before`, and of them only the last `last_days` days when that is not 0."""
    out = {}
    for pair, name in PRICE_FILES.items():
        path = prices_dir / name
        if path.exists():
            frame = pl.read_ipc(path).sort("date").with_columns(ts=pl.col("date").dt.epoch("s"))
            if before is not None:
                frame = frame.filter(pl.col("ts") < before)
            if last_days:
                frame = frame.tail(last_days * 96)
            out[pair] = frame.select("ts", "close")
    return out


def save_regime(out_dir: str | Path, outcome: RegimeOutcome) -> Path:
    """Keep a run's regime outcome for the notebooks after it (the backtest's guard)."""
    import joblib

    path = Path(out_dir) / "regime.joblib"
    joblib.dump(outcome, path)
    return path


def load_regime(out_dir: str | Path) -> RegimeOutcome | None:
    import joblib

    path = Path(out_dir) / "regime.joblib"
    return joblib.load(path) if path.exists() else None


def regime_splits(
    obs: dict[str, pl.DataFrame], *, holdout_fraction: float, validation_fraction: float
) -> tuple[int, int]:
    """(validation start, held-out start) in epoch seconds: the span of all pairs' hours cut in time
    into train, validation (`validation_fraction` of it) and held out (`holdout_fraction`, the last)."""
    start = min(int(o["ts"].min()) for o in obs.values())
    end = max(int(o["ts"].max()) for o in obs.values())
    held = int(start + (end - start) * (1 - holdout_fraction))
    return int(start + (end - start) * (1 - holdout_fraction - validation_fraction)), held


def _worst_ratio(by_pair: dict[str, dict[str, object]], family: str) -> float:
    r = [float(h[family]["ratio"]) for h in by_pair.values()]  # type: ignore[index]
    return min(r) if r and all(np.isfinite(r)) else float("-inf")


def train_regime(
    candles: dict[str, pl.DataFrame],
    *,
    holdout_fraction: float = 0.25,
    validation_fraction: float = 0.15,
    seed: int = 0,
    families: dict[str, type] | None = None,
) -> RegimeOutcome:
    """Choose a regime model family on validation, then judge it once on the held-out period.

    Hours are cut in time: train (the first 60 % by default), validation (the next 15 %), held out
    (the last `holdout_fraction`). Every family of `regime.FAMILIES` is fitted on train and scored on
    validation by its red/green forward 24-hour volatility ratio on its WORST pair: one model serves
    every pair, and it passes only when every pair's interval is above 1, so a family that is strong
    on one pair and weak on the other should not win on the mean. The best family is refit on train +
    validation and judged on the held-out hours (the other families beside it, refit the same way,
    for the record): it beats the no-regime baseline (ratio 1) when every pair's interval low is
    above 1. The held-out period plays no part in the choice. Raises RegimeError when prices are short."""
    families = families or dict(regime.FAMILIES)
    obs = {p: regime.hourly_observations(c) for p, c in candles.items()}
    obs = {p: o for p, o in obs.items() if o.height}
    if not obs:
        raise regime.RegimeError("no prices to fit a regime model on")
    val_ts, split = regime_splits(
        obs, holdout_fraction=holdout_fraction, validation_fraction=validation_fraction
    )

    def judge(fit_before: int, test_from: int, test_before: int | None) -> tuple[dict, dict]:
        fitted = {
            f: cls.fit([o.filter(pl.col("ts") < fit_before) for o in obs.values()], seed=seed)
            for f, cls in families.items()
        }
        scores: dict[str, dict[str, object]] = {}
        for p, o in obs.items():
            test = o.filter((pl.col("ts") >= test_from) & (pl.col("ts") < (test_before or 2**62)))
            scores[p] = {f: regime.red_green_ratio(m.classify(test)) for f, m in fitted.items()}
        return fitted, scores

    _, validation = judge(val_ts, val_ts, split)
    chosen = max(families, key=lambda f: _worst_ratio(validation, f))  # first family wins a tie
    fitted, holdout = judge(split, split, None)
    lows = [float(h[chosen]["ci_low"]) for h in holdout.values()]  # type: ignore[index]
    ok = all(np.isfinite(v) and v > 1.0 for v in lows)
    others = [f for f in families if f != chosen]

    def fmt(h: dict[str, object], f: str) -> str:
        r = h[f]
        return f"{r['ratio']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"  # type: ignore[index]

    parts = [
        f"{p}: red/green forward 24 h volatility {fmt(h, chosen)}"
        + "".join(f" ({f} {h[f]['ratio']:.2f})" for f in others)  # type: ignore[index]
        for p, h in holdout.items()
    ]
    picked = ", ".join(f"{f} {_worst_ratio(validation, f):.2f}" for f in families)
    verdict = (
        f"{chosen} chosen on validation (worst-pair red/green ratio: {picked}); "
        + ("beats" if ok else "does not beat")
        + " the no-regime baseline (ratio 1) on the held-out period; "
        + "; ".join(parts)
    )
    return RegimeOutcome(ok, verdict, fitted[chosen], holdout, split, chosen, validation, val_ts)


def regime_blocked_opens(
    model: regime.Regime,
    candles: dict[str, pl.DataFrame],
    trades: pl.DataFrame,
    pair_index_of: dict[str, int],
) -> pl.DataFrame:
    """(pair_index, open_ts) of copied opens a regime guard would refuse: the pair's last completed
    hour before the open was red."""
    parts = []
    for pair, c in candles.items():
        if pair not in pair_index_of:
            continue
        cls = model.classify(regime.hourly_observations(c)).select("ts", "color").sort("ts")
        idx = pair_index_of[pair]
        opens = (
            trades.filter(pl.col("pair_index") == idx)
            .select("pair_index", "open_ts")
            .unique()
            .sort("open_ts")
        )
        joined = opens.join_asof(cls, left_on="open_ts", right_on="ts", strategy="backward")
        parts.append(joined.filter(pl.col("color") == "red").select("pair_index", "open_ts"))
    return pl.concat(parts) if parts else pl.DataFrame(schema={"pair_index": pl.Int32, "open_ts": pl.Int64})


def summary_rows(
    label: str, outcome: AnalyzerOutcome, truth_eval: dict[str, object] | None = None
) -> list[dict[str, object]]:
    """The report's summary table rows for one population: every model against its baselines."""
    rows: list[dict[str, object]] = []
    rep = outcome.report

    def add(model: str, metric: str, table: pl.DataFrame, baselines: list[str]) -> None:
        m = table.row(0, named=True)
        for b in baselines:
            r = table.filter(pl.col("score") == b).row(0, named=True)
            rows.append(
                {
                    "population": label,
                    "model": model,
                    "metric": metric,
                    "model_value": m["value"],
                    "model_ci": f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]",
                    "baseline": b,
                    "baseline_value": r["value"],
                    "difference_ci": f"{r['model_minus_this']:+.3f} [{r['diff_ci_low']:+.3f}, {r['diff_ci_high']:+.3f}]",
                    "better": bool(r["diff_ci_low"] > 0),
                }
            )

    add("copy score (LightGBM)", "AUC, next-week copy wins", rep["copy_auc"], list(forecast.BASELINES))  # type: ignore[arg-type]
    add("7-day win (LightGBM)", "AUC, next-week PnL > 0", rep["win_auc"], ["p_win_rf", *forecast.BASELINES])  # type: ignore[arg-type]
    add("7-day PnL (LightGBM)", "Spearman, next-week PnL", rep["pnl_spearman"], list(forecast.BASELINES))  # type: ignore[arg-type]
    if outcome.backtest is not None:
        bt = outcome.backtest
        ai = bt.filter(pl.col("ranking") == "ai_score").row(0, named=True)
        for b in ("pnl_30d", "win_rate", "psr", "random"):
            r = bt.filter(pl.col("ranking") == b)
            if r.is_empty():
                continue
            r0 = r.row(0, named=True)
            diff = ai["mean_weekly_pnl_usdc"] - r0["mean_weekly_pnl_usdc"]
            rows.append(
                {
                    "population": label,
                    "model": "top-10 by AI score",
                    "metric": "copy backtest, mean weekly follower PnL (USDC, 100 USDC a trade)",
                    "model_value": ai["mean_weekly_pnl_usdc"],
                    "model_ci": f"[{ai['ci_low']:.1f}, {ai['ci_high']:.1f}]",
                    "baseline": f"top-10 by {b}",
                    "baseline_value": r0["mean_weekly_pnl_usdc"],
                    "difference_ci": f"{diff:+.1f}"
                    + (f" [{ai['diff_ci_low']:+.1f}, {ai['diff_ci_high']:+.1f}]" if b == "pnl_30d" else ""),
                    "better": bool(ai["diff_ci_low"] > 0) if b == "pnl_30d" else bool(diff > 0),
                }
            )
    if truth_eval:
        an = truth_eval["anomaly"]
        assert isinstance(an, dict)
        rows.append(
            {
                "population": label,
                "model": "AI score vs planted edge",
                "metric": f"Spearman, traders with ≥ {truth_eval['min_trades']} trades (ceiling {truth_eval['spearman_edge_ceiling']:.2f} from ties)",
                "model_value": truth_eval["spearman_edge_ai_score"],
                "model_ci": "",
                "baseline": "30-day PnL",
                "baseline_value": truth_eval["spearman_edge_pnl_30d"],
                "difference_ci": "",
                "better": bool(
                    (truth_eval["spearman_edge_ai_score"] or 0) > (truth_eval["spearman_edge_pnl_30d"] or 0)
                ),
            }
        )
        rows.append(
            {
                "population": label,
                "model": "anomaly flags (loss hiding, wash trading)",
                "metric": f"recall on {an['planted']} planted (FPR on {an['others']} others)",
                "model_value": an["recall"],
                "model_ci": f"FPR {an['fpr']:.3f}",
                "baseline": "IsolationForest AUC",
                "baseline_value": truth_eval["isolation_forest_auc"],
                "difference_ci": "",
                "better": bool(an["recall"] >= 0.9 and an["fpr"] <= 0.05),
            }
        )
    return rows


def regime_summary_rows(outcome: RegimeOutcome) -> list[dict[str, object]]:
    """One row per pair: the chosen family on the held-out period beside the other family."""
    rows = []
    other = next((f for h in outcome.holdout.values() for f in h if f != outcome.chosen), None)
    for pair, h in outcome.holdout.items():
        m = h[outcome.chosen]
        b = h[other] if other else None
        rows.append(
            {
                "population": f"real {pair}, held out",
                "model": f"regime ({regime.FAMILY_NAMES.get(outcome.chosen, outcome.chosen)}, chosen on validation)",
                "metric": "forward 24 h volatility, red / green",
                "model_value": m["ratio"],  # type: ignore[index]
                "model_ci": f"[{m['ci_low']:.2f}, {m['ci_high']:.2f}]",  # type: ignore[index]
                "baseline": regime.FAMILY_NAMES.get(other, other) if other else "none",
                "baseline_value": b["ratio"] if b else None,  # type: ignore[index]
                "difference_ci": f"baseline [{b['ci_low']:.2f}, {b['ci_high']:.2f}]" if b else "",  # type: ignore[index]
                "better": bool(m["ratio"] >= 1.5 and m["ci_low"] > 1),  # type: ignore[index]
            }
        )
    return rows


def regime_family_table(outcome: RegimeOutcome) -> pl.DataFrame:
    """Every family's red/green ratio per pair on validation (where the choice is made) and on the
    held-out period (judged once, after the choice)."""
    rows = []
    for period, scores in (("validation", outcome.validation), ("held out", outcome.holdout)):
        for pair, h in scores.items():
            for fam, r in h.items():
                rows.append(
                    {
                        "period": period,
                        "pair": pair,
                        "family": fam,
                        "chosen": fam == outcome.chosen,
                        "ratio": r["ratio"],  # type: ignore[index]
                        "ci_low": r["ci_low"],  # type: ignore[index]
                        "ci_high": r["ci_high"],  # type: ignore[index]
                        "red_hours": r["red_hours"],  # type: ignore[index]
                        "green_hours": r["green_hours"],  # type: ignore[index]
                    }
                )
    return pl.DataFrame(rows)


def regime_guard_rows(label: str, plain: pl.DataFrame, guarded: pl.DataFrame) -> list[dict[str, object]]:
    """What refusing copies while the pair is red does to the AI ranking's follower: PnL and drawdown."""
    a = plain.filter(pl.col("ranking") == "ai_score").row(0, named=True)
    b = guarded.filter(pl.col("ranking") == "ai_score").row(0, named=True)
    return [
        {
            "population": label,
            "model": "regime guard on top-10 by AI score",
            "metric": "mean weekly follower PnL (USDC); max drawdown",
            "model_value": b["mean_weekly_pnl_usdc"],
            "model_ci": f"[{b['ci_low']:.1f}, {b['ci_high']:.1f}]; drawdown {b['max_drawdown_usdc']:.1f}",
            "baseline": "no guard",
            "baseline_value": a["mean_weekly_pnl_usdc"],
            "difference_ci": f"drawdown {a['max_drawdown_usdc']:.1f}",
            "better": bool(b["max_drawdown_usdc"] <= a["max_drawdown_usdc"]),
        }
    ]
