import math

import numpy as np
import pytest

from research import skill


def test_deflated_sharpe_matches_the_2014_paper_example() -> None:
    # Bailey & López de Prado (2014): SR 2.5 annual, T = 1,250 days, N = 100, V = 0.5 (annual),
    # skew -3, kurtosis 10 -> SR0 ≈ 1.79 annual (0.1132 daily), DSR ≈ 0.90.
    sr_daily = 2.5 / math.sqrt(250)
    v_daily = 0.5 / 250
    assert skill.expected_max_sharpe(100, v_daily) * math.sqrt(250) == pytest.approx(1.7894, abs=1e-3)
    assert skill.deflated_sharpe_ratio(sr_daily, 1250, 100, v_daily, -3, 10) == pytest.approx(
        0.9004, abs=1e-3
    )


def test_psr_and_min_trl_agree() -> None:
    # At exactly MinTRL observations the PSR equals the confidence asked for.
    sr, g3, g4 = 0.08, -0.5, 6.0
    n = skill.min_track_record_length(sr, g3, g4, confidence=0.95)
    assert skill.probabilistic_sharpe_ratio(sr, n, g3, g4) == pytest.approx(0.95, abs=1e-9)
    assert skill.min_track_record_length(-0.1) == math.inf
    # Fat left tails demand a longer record than normal returns.
    assert skill.min_track_record_length(sr, -2, 10) > skill.min_track_record_length(sr)


def test_bootstrap_separates_an_edge_from_noise() -> None:
    rng = np.random.default_rng(0)
    assert skill.stationary_bootstrap_pvalue(rng.normal(0.5, 1, 250), n_boot=500) < 0.01
    noise_p = [
        skill.stationary_bootstrap_pvalue(rng.normal(0, 1, 250), n_boot=200, seed=s) for s in range(40)
    ]
    assert 0.3 < float(np.mean(noise_p)) < 0.7  # uniform-ish under the null


def test_skill_share_recovers_a_planted_mix() -> None:
    rng = np.random.default_rng(1)
    # 1,000 traders: 80 % zero edge, 15 % skilled (t ≈ 4), 5 % unskilled (t ≈ -4).
    t = np.concatenate([rng.normal(0, 1, 800), rng.normal(4, 1, 150), rng.normal(-4, 1, 50)])
    share = skill.skill_share(t)
    assert share.pi0 == pytest.approx(0.8, abs=0.08)
    assert share.skilled == pytest.approx(0.15, abs=0.04)
    assert share.unskilled == pytest.approx(0.05, abs=0.03)
    assert skill.skill_share(rng.normal(0, 1, 2000)).skilled < 0.03
