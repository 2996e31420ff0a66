"""The simulator: determinism, exact Avantis mechanics, and a truth that is recoverable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from data.event_frames import events_from_frame
from data.pairs import builtin_catalogue, load_catalogue
from research.reconcile import reconcile_events
from research.sim.calibration import mean_difference, per_trader_outcomes
from research.sim.prices import synthetic_paths
from research.sim.run import simulate
from tests.conftest import SHARED_DATA, shared_data_or_skip

VANTA = str(Path(sys.executable).parent / "vanta")


def test_same_seed_same_bytes_different_seed_different_events(tmp_path: Path) -> None:
    def run(seed: int, out: Path) -> dict:
        res = subprocess.run(
            [
                VANTA,
                "simulate",
                "--traders",
                "60",
                "--days",
                "10",
                "--seed",
                str(seed),
                "--out",
                str(out),
                "--prices",
                "synthetic",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    a, b = run(7, tmp_path / "a"), run(7, tmp_path / "b")
    run(8, tmp_path / "c")
    assert a["traders"] == 60 and a["events"] == b["events"] > 100
    for name in ("events.parquet", "truth.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "events.parquet").read_bytes() != (
        tmp_path / "c" / "events.parquet"
    ).read_bytes()
    # Worker count does not change the output either.
    one = simulate(60, 10, 7, prices="synthetic", workers=1).events
    assert one.equals(pl.read_parquet(tmp_path / "a" / "events.parquet"))


@pytest.mark.parametrize("prices", ["synthetic", "real"])
def test_every_simulated_close_reconciles_exactly(prices: str) -> None:
    if prices == "real":
        folder = shared_data_or_skip("prices")
        catalogue = load_catalogue(SHARED_DATA / "avantis" / "trading_snapshot.json")
    else:
        folder, catalogue = "synthetic", builtin_catalogue()
    sim = simulate(150, 30, 5, prices=folder, catalogue=catalogue)
    events = events_from_frame(sim.events)
    check = reconcile_events(events, catalogue)
    assert check.mismatches == []
    assert check.closes == check.exact > 1000
    kinds = set(sim.events["kind"])
    assert {"open", "close", "partial_close", "tp", "sl", "liquidation"} <= kinds
    # Fees: 0.045 % of notional at open, closes pay a closing fee and rollover accrues with time.
    opens = sim.events.filter(pl.col("kind") == "open")
    assert (opens["open_fee_usdc"] > 0).all()
    assert (sim.events.filter(pl.col("kind") == "close")["rollover_fee_usdc"] > 0).mean() > 0.5
    assert (sim.events["loss_protection_usdc"].fill_null(0) > 0).any()  # some losses were partly forgiven
    # Leverage never exceeds the pair's maximum; positions meet the minimum size.
    assert opens["leverage_e10"].max() <= 75 * 10**10
    # (Leverage is drawn in tenths: dividing first keeps the product inside 64 bits.)
    assert (opens["leverage_e10"] % 10**9 == 0).all()
    notional = (opens["collateral_usdc"] + opens["open_fee_usdc"]) * (opens["leverage_e10"] // 10**9) // 10
    assert (notional >= 100_000_000).all()


def test_trade_index_is_reused_after_a_close() -> None:
    sim = simulate(40, 20, 2, prices="synthetic")
    opens = sim.events.filter(pl.col("kind") == "open")
    reused = opens.group_by("trader", "pair_index", "trade_index").agg(
        pl.col("open_ts").n_unique().alias("n")
    )
    assert reused["n"].max() > 1
    # ... and never while the earlier position at that index is still open.
    closes = sim.events.filter(pl.col("kind").is_in(["close", "tp", "sl", "liquidation"]))
    spans = opens.join(
        closes.select("trader", "pair_index", "trade_index", "open_ts", pl.col("ts").alias("close_ts")),
        on=["trader", "pair_index", "trade_index", "open_ts"],
    ).sort("open_ts")
    for _, group in spans.group_by("trader", "pair_index", "trade_index"):
        starts, ends = group["open_ts"].to_numpy(), group["close_ts"].to_numpy()
        assert (starts[1:] >= ends[:-1]).all()


def test_synthetic_market_has_fat_tails_and_volatility_clustering() -> None:
    path = synthetic_paths(120, 3)["BTC/USD"]
    r = np.diff(np.log(path.close.astype(float)))
    kurt = ((r - r.mean()) ** 4).mean() / r.var() ** 2
    assert kurt > 4  # a normal has 3
    a = np.abs(r)
    autocorr = np.corrcoef(a[:-1], a[1:])[0, 1]
    assert autocorr > 0.1  # quiet and busy periods cluster
    daily_vol = r.std() * np.sqrt(96)
    assert 0.01 < daily_vol < 0.08
    assert (path.high >= np.maximum(path.open, path.close)).all() and (
        path.low <= np.minimum(path.open, path.close)
    ).all()


@pytest.fixture(scope="module")
def calibration_outcomes() -> pl.DataFrame:
    sim = simulate(
        600, 180, 11, prices="synthetic", shares={"skilled": 0.34, "noise": 0.33, "loss_hider": 0.33}
    )
    return per_trader_outcomes(sim.events, sim.truth)


def group(outcomes: pl.DataFrame, archetype: str, column: str) -> np.ndarray:
    return outcomes.filter(pl.col("archetype") == archetype)[column].to_numpy()


def test_skilled_traders_earn_more_than_noise_traders_with_confidence(
    calibration_outcomes: pl.DataFrame,
) -> None:
    diff = mean_difference(
        group(calibration_outcomes, "skilled", "roc"), group(calibration_outcomes, "noise", "roc")
    )
    assert diff.low > 0, diff  # the whole 95 % interval above zero


def test_loss_hiders_win_more_often_but_have_the_worse_tail(calibration_outcomes: pl.DataFrame) -> None:
    wins = mean_difference(
        group(calibration_outcomes, "loss_hider", "win_rate"),
        group(calibration_outcomes, "noise", "win_rate"),
    )
    assert wins.low > 0, wins
    tail = mean_difference(
        group(calibration_outcomes, "noise", "tail_roc"),
        group(calibration_outcomes, "loss_hider", "tail_roc"),
    )
    assert tail.low > 0, tail  # noise traders' worst 5 % of closes are less bad
