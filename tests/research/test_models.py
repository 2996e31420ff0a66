"""Walk-forward discipline, the registration rule, the copy backtest's arithmetic, the filtered
regime, and the analyzer's rows."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import polars as pl
import pytest

from research import analyzer as A
from research import backtest, forecast, pipeline, regime
from research.features import DAY
from tests.conftest import shared_data_or_skip
from tests.research.analyzer_fixtures import small_population


@pytest.fixture(scope="module")
def trained() -> pipeline.AnalyzerOutcome:
    events, _ = small_population()
    return pipeline.train_analyzer(events, int(events["ts"].max()) + 1, seed=0)


def test_walk_forward_trains_only_on_labels_complete_before_the_date(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events, _ = small_population()
    tables = pipeline.Tables.from_events(events)
    panel = forecast.build_panel(tables.trades, forecast.as_of_dates(tables.trades))
    seen: list[tuple[int, int]] = []
    real_fit = forecast.Forecaster.fit.__func__  # type: ignore[attr-defined]

    def spy(cls: type, train: pl.DataFrame, *, seed: int = 0) -> forecast.Forecaster:
        seen.append((int(train["as_of"].max()), int(train.height)))
        return real_fit(cls, train, seed=seed)

    monkeypatch.setattr(forecast.Forecaster, "fit", classmethod(spy))
    wf = forecast.walk_forward(panel)
    assert wf.folds >= 2 and len(seen) == wf.folds
    for (last_train, _), test_date in zip(seen, wf.train_dates, strict=True):
        assert last_train + forecast.HORIZON_DAYS * DAY <= test_date
    assert set(wf.predictions["as_of"].unique()) == set(wf.train_dates)


def test_history_too_short_says_how_much_is_needed() -> None:
    events, _ = small_population(traders=20, days=45)
    with pytest.raises(forecast.HistoryTooShort, match=r"need 200.*at least 35 days"):
        pipeline.train_analyzer(events, int(events["ts"].max()) + 1)


def test_a_model_that_loses_to_a_baseline_is_not_fitted_for_registration(
    trained: pipeline.AnalyzerOutcome,
) -> None:
    table = trained.report["copy_auc"]
    assert isinstance(table, pl.DataFrame)
    assert trained.beats_baseline == forecast.beats_baselines(table)[0]
    assert (trained.analyzer is not None) == trained.beats_baseline
    # The rule itself: the model must beat every baseline with its interval above zero.
    losing = table.with_columns(
        diff_ci_low=pl.when(pl.col("score") == "psr").then(-1.0).otherwise(pl.col("diff_ci_low").abs() + 0.01)
    )
    ok, why = forecast.beats_baselines(losing)
    assert not ok and "does not beat" in why and "psr" in why


def test_paired_comparison_ranks_a_perfect_score_first() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.4
    preds = pl.DataFrame({"y": y.astype(int), "perfect": y + rng.random(400) * 0.1, "noise": rng.random(400)})
    table = forecast.compare(preds, "y", ["perfect", "noise"])
    perfect, noise = table.row(0, named=True), table.row(1, named=True)
    assert perfect["value"] == 1.0 and 0.4 < noise["value"] < 0.6
    assert noise["diff_ci_low"] > 0.3


def _trade(**kw: object) -> dict[str, object]:
    base = dict(
        trader="a",
        ts=1_000,
        open_ts=500,
        pair_index=1,
        is_long=True,
        kind="close",
        leverage=10.0,
        collateral=50.0,
        notional=500.0,
        realized=0.0,
        hold_s=500,
        open_price=100.0,
        close_price=101.0,
        tp_set=False,
        sl_set=False,
        fee=0.0,
        rollover=0.0,
        roc=0.0,
    )
    return base | kw


def test_copy_pnl_after_fees_slippage_and_the_liquidation_floor() -> None:
    trades = pl.DataFrame(
        [
            _trade(),  # long +1 % at 10x
            _trade(trader="b", is_long=False, close_price=80.0),  # short, price -20 %: +200 %
            _trade(trader="c", close_price=50.0),  # long, price -50 % at 10x: liquidated
        ]
    )
    copies = backtest.copied_trades(trades, collateral_usdc=100.0, slippage_bps=10.0, fee_ppm={1: (450, 450)})
    pnl = dict(zip(copies["trader"], copies["copy_pnl"], strict=True))
    entry, exit_ = 100 * 1.001, 101 * 0.999
    assert pnl["a"] == pytest.approx(100 * 10 * (exit_ / entry - 1) - 100 * 10 * 900 / 1e6)
    assert pnl["b"] == pytest.approx(100 * 10 * -(80 * 1.001 / (100 * 0.999) - 1) - 0.9)
    assert pnl["c"] == pytest.approx(-100.0)


def test_weekly_copies_follow_the_picks_and_the_guard() -> None:
    trades = pl.DataFrame(
        [_trade(open_ts=10 * DAY + 5, ts=10 * DAY + 600), _trade(trader="b", open_ts=10 * DAY + 9)]
    )
    copies = backtest.copied_trades(trades)
    picks = pl.DataFrame({"as_of": [10 * DAY, 10 * DAY], "trader": ["a", "b"], "ranking": ["x", "y"]})
    weekly = backtest.weekly_copy_pnl(copies, picks)
    assert dict(zip(weekly["ranking"], weekly["copies"], strict=True)) == {"x": 1, "y": 1}
    blocked = pl.DataFrame({"pair_index": [1], "open_ts": [10 * DAY + 5]})
    guarded = backtest.weekly_copy_pnl(copies, picks, blocked=blocked)
    assert dict(zip(guarded["ranking"], guarded["copies"], strict=True)) == {"x": 0, "y": 1}
    scores = pl.DataFrame({"as_of": [1, 1, 1], "trader": ["a", "b", "c"], "s": [0.2, 0.9, 0.5]})
    assert backtest.top_k(scores, "s", 2)["trader"].to_list() == ["b", "c"]


def test_analyzer_rows_never_put_a_flagged_trader_on_top(trained: pipeline.AnalyzerOutcome) -> None:
    events, _ = small_population()
    tables = pipeline.Tables.from_events(events)
    feats = tables.features_at(int(events["ts"].max()) + 1)
    # Whether or not it won its verdict, score with a fitted analyzer of the registered shape.
    analyzer = trained.analyzer or A.fit_analyzer(
        forecast.build_panel(tables.trades, forecast.as_of_dates(tables.trades)), feats
    )
    rows = A.score_frame(feats, analyzer)
    assert rows.columns[: len(A.ROW_COLUMNS)] == list(A.ROW_COLUMNS)
    assert rows["rank"].to_list() == list(range(1, rows.height + 1))
    flagged = rows["flags"].list.len() > 0
    assert flagged.any() and not flagged.all()
    assert flagged.arg_true().min() > (~flagged).arg_true().max()
    assert rows["p_win_7d"].is_between(0, 1).all() and rows["score"].is_between(0, 100).all()
    # No model: the score is PSR alone, marked, forecasts empty.
    plain = A.score_frame(feats, None)
    assert set(plain["score_source"]) == {A.SCORE_FROM_SKILL} and plain["p_win_7d"].is_null().all()
    unflagged = plain.filter(plain["flags"].list.len() == 0)
    assert unflagged["score"].to_list() == sorted(unflagged["score"].to_list(), reverse=True)


def _regime_prices(seed: int, hours: int = 24 * 150) -> pl.DataFrame:
    """15-minute closes whose volatility switches between calm, usual and stormy spells."""
    rng = np.random.default_rng(seed)
    bars = hours * 4
    # Calm, usual and stormy spells of three days each.
    spell = np.repeat(rng.choice(3, bars // (96 * 3) + 1, p=[0.3, 0.5, 0.2]), 96 * 3)[:bars]
    vol = np.array([0.0008, 0.002, 0.006])[spell]
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1, bars) * vol))
    return pl.DataFrame({"ts": np.arange(bars, dtype=np.int64) * 900, "close": close})


def test_regime_is_filtered_and_red_means_more_volatility_ahead() -> None:
    prices = _regime_prices(0)
    obs = regime.hourly_observations(prices)
    model = regime.RegimeModel.fit([obs.head(obs.height * 2 // 3)])
    full = model.classify(obs)
    past = model.classify(obs.head(2000))
    # Filtered only: an hour's answer does not change when later hours are added.
    assert full.head(2000)["color"].equals(past["color"])
    assert np.allclose(full.head(2000)["confidence"], past["confidence"])
    held = model.classify(obs.tail(obs.height // 3))
    ratio = regime.red_green_ratio(held)
    assert ratio["ratio"] > 1.5 and ratio["ci_low"] > 1.0
    assert set(held["trend"]) <= {"bullish", "bearish", "neutral"}
    assert held["confidence"].is_between(0, 1).all()


def test_quantile_regime_confidence_is_filtered_and_calibrated() -> None:
    prices = _regime_prices(1)
    obs = regime.hourly_observations(prices)
    model = regime.QuantileRegime.fit([obs.head(obs.height * 2 // 3)])
    full = model.classify(obs)
    # No look-ahead: delete every bar after hour t (from the candles) and nothing at or before t changes.
    t_bars = prices.height // 2
    past = model.classify(regime.hourly_observations(prices.head(t_bars)))
    assert past.height > 100
    head = full.filter(pl.col("ts") <= past["ts"].max())
    assert head["ts"].equals(past["ts"]) and head["color"].equals(past["color"])
    for col in ("confidence", "p_green", "p_yellow", "p_red"):
        assert np.allclose(head[col], past[col]), col
    assert full["confidence"].null_count() == 0 and full["confidence"].is_between(0, 1).all()
    p = full.select("p_green", "p_yellow", "p_red").to_numpy()
    assert np.allclose(p.sum(1), 1)
    assert (
        full["confidence"]
        == full.select(
            pl.when(pl.col("color") == "red")
            .then("p_red")
            .when(pl.col("color") == "yellow")
            .then("p_yellow")
            .otherwise("p_green")
        ).to_series()
    ).all()
    # Calibrated distance to the thresholds: an hour deep in red is surer than one just above the line.
    rel = full["vol_24h"] / full["vol_norm"]
    red = full.with_columns(rel=rel).filter(pl.col("color") == "red").sort("rel")
    assert red["confidence"].head(20).mean() < red["confidence"].tail(20).mean()  # type: ignore[operator]
    held = model.classify(obs.tail(obs.height // 3))
    r = regime.red_green_ratio(held)
    assert r["ratio"] > 1.5 and r["ci_low"] > 1.0
    import joblib

    joblib.dump(model, buf := io.BytesIO())
    buf.seek(0)
    assert joblib.load(buf).classify(obs).equals(full)


@dataclass
class _Hindsight:
    """A test family that colors each hour by its own forward volatility (a look-ahead no real model
    has): right (red when the next day is stormier than usual) on one side of `flip_ts`, reversed on
    the other. It lets the test know which family validation and held-out each favour."""

    train_start: int
    train_end: int
    name: str = "hindsight"
    flip_ts: ClassVar[int] = 0
    right_first: ClassVar[bool] = True

    @classmethod
    def fit(cls, observations: list[pl.DataFrame], *, seed: int = 0) -> _Hindsight:
        return cls(
            min(int(o["ts"].min()) for o in observations), max(int(o["ts"].max()) for o in observations)
        )

    def classify(self, obs: pl.DataFrame) -> pl.DataFrame:
        f = regime.forward_volatility(obs)
        stormy = pl.col("fwd_vol_24h") > pl.col("fwd_vol_24h").median()
        right = (pl.col("ts") < self.flip_ts) == self.right_first
        return f.with_columns(
            color=pl.when(stormy == right).then(pl.lit("red")).otherwise(pl.lit("green"))
        ).drop("fwd_vol_24h")

    def describe(self) -> dict[str, object]:
        return {}


class _RightThenWrong(_Hindsight):
    right_first = True


class _WrongThenRight(_Hindsight):
    right_first = False


def test_the_regime_family_is_chosen_on_validation_never_on_the_held_out_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    candles = {"A/USD": _regime_prices(2), "B/USD": _regime_prices(3)}
    obs = {p: regime.hourly_observations(c) for p, c in candles.items()}
    val_ts, split = pipeline.regime_splits(obs, holdout_fraction=0.25, validation_fraction=0.15)
    assert val_ts < split
    monkeypatch.setattr(_Hindsight, "flip_ts", split)
    families = {"wrong_then_right": _WrongThenRight, "right_then_wrong": _RightThenWrong}
    outcome = pipeline.train_regime(candles, families=families)  # type: ignore[arg-type]
    # Validation favours right_then_wrong (listed second, so not a tie going to the first) ...
    for h in outcome.validation.values():
        assert h["right_then_wrong"]["ratio"] > 1 > h["wrong_then_right"]["ratio"]  # type: ignore[index,operator]
    assert outcome.chosen == "right_then_wrong" and type(outcome.model) is _RightThenWrong
    # ... though the held-out period favours the other: the choice did not look at it.
    for h in outcome.holdout.values():
        assert h["wrong_then_right"]["ratio"] > 1 > h["right_then_wrong"]["ratio"]  # type: ignore[index,operator]
    assert not outcome.beats_baseline and "does not beat" in outcome.verdict
    # The chosen family is refit on train + validation, before the held-out period.
    assert val_ts <= outcome.model.train_end < split == outcome.split_ts and outcome.validation_ts == val_ts
    assert set(outcome.baseline_metrics()["A/USD"]) == {"wrong_then_right"}  # type: ignore[arg-type]


def test_regime_on_the_real_prices_held_out() -> None:
    prices = shared_data_or_skip("prices")
    outcome = pipeline.train_regime(pipeline.load_candles(prices))
    worst = {f: min(float(h[f]["ratio"]) for h in outcome.validation.values()) for f in regime.FAMILIES}  # type: ignore[index]
    assert outcome.chosen == max(worst, key=worst.__getitem__)
    assert type(outcome.model) is regime.FAMILIES[outcome.chosen]
    for pair, h in outcome.holdout.items():
        assert set(h) == set(regime.FAMILIES), pair
        chosen = h[outcome.chosen]
        assert chosen["red_hours"] > 0 and chosen["green_hours"] > 0, pair  # type: ignore[index,operator]
        assert chosen["ratio"] > 1.0, pair  # type: ignore[index,operator]  # red hours are followed by more volatility than green ones
    last = outcome.model.classify(regime.hourly_observations(pipeline.load_candles(prices)["BTC/USD"])).row(
        -1, named=True
    )
    assert last["color"] in regime.COLORS and 0 <= last["confidence"] <= 1


def test_eligibility_settings_filter_the_leaderboard() -> None:
    trades = pl.DataFrame(
        [_trade(trader="busy", ts=29 * DAY + i, notional=1_000.0) for i in range(5)]
        + [_trade(trader="idle", ts=DAY + i, notional=1_000.0) for i in range(5)]
        + [_trade(trader="small", ts=29 * DAY + i, notional=10.0) for i in range(5)]
    )
    ok = A.eligible_traders(trades, 30 * DAY, active_hours=72, min_trades_30d=5, min_volume_30d_usd=1_000)
    assert ok.to_list() == ["busy"]
    from research.features import trader_features

    rows = A.score_frame(trader_features(trades, 30 * DAY), None, eligible=ok)
    assert rows["trader"].to_list() == ["busy"] and rows["rank"].to_list() == [1]
