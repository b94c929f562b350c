"""Paired statistics of attack settings: the effect size against scipy's signed-rank statistic, each column of the
table against a direct computation, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from volrob.errors import ConfigError, DataError
from volrob.evaluation.attack_effect import EFFECT_COLUMNS, attack_effects
from volrob.evaluation.summary import bootstrap_mean_ci, paired_wilcoxon, rank_biserial


def _scipy_rank_biserial(a: np.ndarray, b: np.ndarray) -> float:
    """(W+ − W−)/(W+ + W−) from scipy: with ``alternative='greater'`` its statistic is W+ over the non-zero
    differences, and W+ + W− = n(n + 1)/2."""
    d = a - b
    n = int(np.count_nonzero(d))
    plus = stats.wilcoxon(a, b, alternative="greater").statistic
    total = n * (n + 1) / 2
    return float((2 * plus - total) / total)


@pytest.mark.parametrize("seed", range(6))
def test_rank_biserial_matches_scipy_statistic(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.random(15)
    b = a - rng.normal(0.05, 0.1, 15)
    b[:3] = a[:3]  # zero differences are dropped by both
    b[5] = a[5] - (a[6] - b[6])  # a tie in |d|
    assert rank_biserial(a - b) == pytest.approx(_scipy_rank_biserial(a, b), abs=1e-12)
    assert paired_wilcoxon(a, b).effect_size == pytest.approx(_scipy_rank_biserial(a, b), abs=1e-12)


def test_rank_biserial_extremes() -> None:
    assert rank_biserial(np.array([0.1, 0.2, 0.3])) == 1.0
    assert rank_biserial(np.array([-0.1, -0.2])) == -1.0
    assert rank_biserial(np.zeros(4)) == 0.0
    assert paired_wilcoxon([1.0, 2.0], [1.0, 2.0]).effect_size == 0.0


def _results() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for cell, model, attack, eps in (("m__pgd__e8", "m", "pgd", 8.0), ("m__noise__e8", "m", "noise", 8.0)):
        for i in range(7):
            clean = 0.8 + 0.01 * i
            for region, metric in (("WT", "dice"), ("TC", "dice"), ("WT", "hd95")):
                rows.append({"cell": cell, "case": f"c{i}", "model": model, "white_box": True, "attack": attack,
                             "budget_key": "eps", "budget": eps, "eps": eps, "region": region, "metric": metric,
                             "clean": clean, "adversarial": clean - rng.uniform(0, 0.3), "linf_255": 8.0 - i * 0.1,
                             "ssim": 0.99 - i * 0.001})
    rows.append({**rows[0], "cell": "x__pgd", "model": "other", "white_box": False})  # black-box: left out
    return pd.DataFrame(rows)


def test_attack_effects_equal_direct_computation() -> None:
    results = _results()
    table = attack_effects(results, region="WT", seed=3)
    assert list(table.columns) == EFFECT_COLUMNS
    assert list(table["cell"]) == ["m__pgd__e8", "m__noise__e8"]
    for row in table.itertuples():
        g = results[(results["cell"] == row.cell) & (results["region"] == "WT") & (results["metric"] == "dice")]
        drop = (g["clean"] - g["adversarial"]).to_numpy()
        assert row.n == 7
        assert row.clean_mean == pytest.approx(g["clean"].mean())
        assert row.adversarial_mean == pytest.approx(g["adversarial"].mean())
        assert row.drop == pytest.approx(drop.mean())
        assert (row.drop_ci_low, row.drop_ci_high) == bootstrap_mean_ci(drop, seed=3)
        assert row.wilcoxon_p == pytest.approx(stats.wilcoxon(g["clean"], g["adversarial"]).pvalue)
        clean, adv = g["clean"].to_numpy(), g["adversarial"].to_numpy()
        assert row.effect_size == pytest.approx(_scipy_rank_biserial(clean, adv))
        assert row.linf_255_max == pytest.approx(g["linf_255"].max())
        assert row.ssim_mean == pytest.approx(g["ssim"].mean())


def test_attack_effects_rows_do_not_depend_on_other_cells() -> None:
    results = _results()
    alone = attack_effects(results[results["cell"] == "m__noise__e8"], seed=1)
    both = attack_effects(results, seed=1)
    pd.testing.assert_frame_equal(alone.reset_index(drop=True), both[both["cell"] == "m__noise__e8"].reset_index(
        drop=True))


def test_attack_effects_bad_input() -> None:
    with pytest.raises(ConfigError, match=r"lack column\(s\) \['ssim'\]"):
        attack_effects(_results().drop(columns="ssim"))
    with pytest.raises(DataError, match="no white-box rows of region 'XX'"):
        attack_effects(_results(), region="XX")
