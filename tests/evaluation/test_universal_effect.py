"""A universal perturbation against its control: each column against a direct computation (scipy for the test),
models without both attacks left out, bad input refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from volrob.errors import ConfigError
from volrob.evaluation.summary import bootstrap_mean_ci, rank_biserial
from volrob.evaluation.universal_effect import UNIVERSAL_COLUMNS, universal_effects


def _results() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for model, white in (("src", True), ("other", False)):
        for i in range(8):
            clean = 0.7 + 0.02 * i
            for attack, hurt in (("universal", 0.1), ("sign_noise", 0.01)):
                for region in ("WT", "TC"):
                    rows.append({"case": f"c{i}", "model": model, "white_box": white, "attack": attack,
                                 "region": region, "metric": "dice", "clean": clean,
                                 "adversarial": clean - hurt * rng.uniform(0.5, 1.5)})
    rows.append({**rows[0], "model": "alone", "attack": "universal"})  # no control: left out
    return pd.DataFrame(rows)


def test_universal_effects_equal_direct_computation() -> None:
    results = _results()
    table = universal_effects(results, region="WT", seed=2)
    assert list(table.columns) == UNIVERSAL_COLUMNS and list(table["model"]) == ["src", "other"]
    for row in table.itertuples():
        g = results[(results["model"] == row.model) & (results["region"] == "WT")]
        u = g[g["attack"] == "universal"].set_index("case")["adversarial"]
        c = g[g["attack"] == "sign_noise"].set_index("case")["adversarial"].reindex(u.index)
        assert row.n == 8 and row.white_box == (row.model == "src")
        assert (row.universal, row.control, row.diff) == pytest.approx((u.mean(), c.mean(), (u - c).mean()))
        assert (row.diff_ci_low, row.diff_ci_high) == bootstrap_mean_ci((u - c).to_numpy(), seed=2)
        assert row.p_universal_lower == pytest.approx(stats.wilcoxon(u, c, alternative="less").pvalue)
        assert row.effect_size == pytest.approx(rank_biserial((c - u).to_numpy())) and row.effect_size == 1.0


def test_no_pair_no_rows_and_bad_input() -> None:
    results = _results()
    assert universal_effects(results[results["attack"] == "universal"]).empty
    with pytest.raises(ConfigError, match=r"lack column\(s\) \['white_box'\]"):
        universal_effects(results.drop(columns="white_box"))
