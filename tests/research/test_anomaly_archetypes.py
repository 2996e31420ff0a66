"""Named anomaly flags (each rule alone), the IsolationForest scale, archetype naming and stability."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from research import anomaly, archetypes
from research.features import FEATURES

NORMAL = {f: 0.0 for f in FEATURES} | {
    "trades": 80.0,
    "trades_per_day": 1.5,
    "log_trades_per_day": float(np.log(1.5)),
    "log_hold_median_h": float(np.log(5.0)),
    "win_rate": 0.5,
    "no_sl_share": 0.2,
    "roc_skew": 0.1,
    "lev_mean": 8.0,
    "liquidation_share": 0.0,
    "size_after_loss": 0.0,
}


def frame(**overrides: dict[str, float]) -> pl.DataFrame:
    rows = [{"trader": name, **NORMAL, **values} for name, values in overrides.items()]
    return pl.DataFrame(rows)


@pytest.mark.parametrize(
    ("flag", "values"),
    [
        ("loss_hiding", {"roc_skew": -2.5, "no_sl_share": 1.0, "win_rate": 0.7}),
        ("wash_trading", {"log_hold_median_h": float(np.log(5 / 60)), "trades_per_day": 10.0}),
        ("martingale_sizing", {"size_after_loss": 0.7}),
        ("liquidation_prone", {"liquidation_share": 0.2}),
        ("liquidation_prone", {"lev_mean": 60.0}),
    ],
)
def test_each_rule_flags_its_behaviour_and_says_why(flag: str, values: dict[str, float]) -> None:
    flags = anomaly.flag_frame(frame(odd=values, plain={}))
    odd, plain = flags.row(0, named=True), flags.row(1, named=True)
    assert odd[flag] and odd["flags"] == [flag]
    assert plain["flags"] == [] and not any(plain[n] for n in anomaly.FLAG_NAMES)
    assert len(anomaly.REASONS[flag]) > 40  # a sentence a follower can read


def test_short_records_are_never_flagged() -> None:
    few = {"roc_skew": -3.0, "no_sl_share": 1.0, "win_rate": 0.9, "trades": anomaly.MIN_TRADES_FOR_FLAGS - 1}
    assert anomaly.flag_frame(frame(few=few))["flags"].to_list() == [[]]


def test_detection_rates_count_recall_and_false_positives() -> None:
    flags = pl.DataFrame(
        {
            "trader": ["a", "b", "c", "d", "e"],
            "loss_hiding": [True, False, False, True, False],
            "wash_trading": [False, True, False, False, False],
        }
    )
    labels = pl.DataFrame(
        {"trader": ["a", "b", "c", "d", "e"], "label": ["lh", "wash", "lh", "noise", "noise"]}
    )
    r = anomaly.detection_rates(flags, labels, {"loss_hiding": "lh", "wash_trading": "wash"})
    assert r["recall"] == pytest.approx(2 / 3) and r["fpr"] == pytest.approx(1 / 2)
    assert r["recall_loss_hiding"] == pytest.approx(1 / 2) and r["recall_wash_trading"] == 1.0


def test_isolation_forest_scores_the_outlier_highest() -> None:
    rng = np.random.default_rng(0)
    rows = {f"t{i}": {f: float(rng.normal()) for f in FEATURES} | {"trades": 50.0} for i in range(200)}
    rows["odd"] = {f: 40.0 for f in FEATURES}
    feats = frame(**rows)
    model = anomaly.AnomalyModel.fit(feats)
    scores = model.score(feats)
    assert scores.argmax() == feats.height - 1 and 0.0 <= scores.min() and scores.max() <= 1.0
    assert scores[-1] >= model.threshold


def _style_population(seed: int) -> pl.DataFrame:
    """Five style groups, each clearly one of the documented names."""
    rng = np.random.default_rng(seed)
    groups = {
        "vh": dict(log_trades_per_day=3.0, log_hold_median_h=-2.0, lev_mean=8, sl_share=0.2, tp_share=0.2),
        "cs": dict(log_trades_per_day=0.5, log_hold_median_h=-1.5, lev_mean=2, sl_share=0.2, tp_share=0.2),
        "as": dict(log_trades_per_day=0.0, log_hold_median_h=3.5, lev_mean=40, sl_share=0.2, tp_share=0.2),
        "rm": dict(log_trades_per_day=0.5, log_hold_median_h=1.5, lev_mean=10, sl_share=1.0, tp_share=1.0),
        "pt": dict(
            log_trades_per_day=-1.5,
            log_hold_median_h=1.5,
            lev_mean=10,
            sl_share=0.2,
            tp_share=0.2,
            pair_concentration=1.0,
        ),
    }
    rows = []
    for g, centre in groups.items():
        for i in range(30):
            row = {**NORMAL, "pair_concentration": 0.4, "size_cv": 0.3, "long_share": 0.5, **centre}
            # Jitter the dimensions that tell the groups apart; the others stay constant (a
            # standardized constant is 0, while standardized jitter alone would be unit noise).
            row = {k: (v + rng.normal(0, 0.05) if k in centre else v) for k, v in row.items()}
            rows.append({"trader": f"{g}{i}", "group": g, **row, "trades": 50.0})
    return pl.DataFrame(rows)


def test_clusters_are_named_by_the_centroid_rules() -> None:
    feats = _style_population(0)
    model = archetypes.ArchetypeModel.fit(feats)
    assert model is not None and sorted(model.names) == sorted(archetypes.NAME_RULES)
    named = feats.with_columns(archetype=pl.Series(model.label(feats)))
    expected = {
        "vh": "Volume Hunter",
        "cs": "Conservative Scalper",
        "as": "Aggressive Swinger",
        "rm": "Risk Manager",
        "pt": "Precision Trader",
    }
    for group, name in expected.items():
        assert set(named.filter(pl.col("group") == group)["archetype"]) == {name}


def test_few_trades_and_refit_stability() -> None:
    feats = _style_population(1)
    few = feats.head(1).with_columns(trades=pl.lit(3.0))
    model = archetypes.ArchetypeModel.fit(feats)
    assert model is not None and model.label(few) == [archetypes.NOT_ENOUGH]
    assert archetypes.refit_stability(feats, _style_population(2)) == pytest.approx(1.0)
    assert archetypes.ArchetypeModel.fit(feats.head(5)) is None  # too few traders to cluster
