"""A universal perturbation against its control: per scored model, the Dice under the learned perturbation and under
random-sign noise of the same budget (``sign_noise``) on the same cases, paired.

Per model (one region, Dice): the number of cases, the mean clean, universal and control Dice, the paired difference
``universal − control`` with a percentile-bootstrap 95 % interval, and the one-sided paired Wilcoxon p-value that
the universal perturbation hurts more than the control (``universal < control``), with its effect size (matched-pairs
rank-biserial correlation of ``control − universal``: 1 when it hurt more on every case).
"""

from __future__ import annotations

import pandas as pd

from volrob.errors import ConfigError
from volrob.evaluation.summary import bootstrap_mean_ci, paired_wilcoxon

UNIVERSAL_COLUMNS = ["model", "white_box", "region", "n", "clean", "universal", "control", "diff", "diff_ci_low",
                     "diff_ci_high", "p_universal_lower", "effect_size"]
_NEED = ("case", "model", "white_box", "attack", "region", "metric", "clean", "adversarial")


def universal_effects(results: pd.DataFrame, *, region: str = "WT", seed: int = 0, n_boot: int = 2000
                      ) -> pd.DataFrame:
    """One row per scored model that has both ``universal`` and ``sign_noise`` rows (columns
    :data:`UNIVERSAL_COLUMNS`); empty when the results hold no such pair."""
    missing = [c for c in _NEED if c not in results.columns]
    if missing:
        raise ConfigError(f"universal_effects: results lack column(s) {missing}")
    dice = results[(results["region"] == region) & (results["metric"] == "dice")]
    rows = []
    for model, g in dice.groupby("model", sort=False):
        uni = g[g["attack"] == "universal"].set_index("case")
        ctl = g[g["attack"] == "sign_noise"].set_index("case")
        cases = [c for c in uni.index if c in ctl.index]
        if not cases:
            continue
        u, c = uni.loc[cases, "adversarial"].astype(float), ctl.loc[cases, "adversarial"].astype(float)
        low, high = bootstrap_mean_ci((u - c).to_numpy(), n_boot=n_boot, seed=seed)
        test = paired_wilcoxon(u, c, alternative="less")
        rows.append({"model": model, "white_box": bool(uni["white_box"].astype(str).str.lower().eq("true").any()),
                     "region": region, "n": len(cases), "clean": float(uni.loc[cases, "clean"].mean()),
                     "universal": float(u.mean()), "control": float(c.mean()), "diff": float((u - c).mean()),
                     "diff_ci_low": low, "diff_ci_high": high, "p_universal_lower": test.pvalue,
                     "effect_size": -test.effect_size})
    return pd.DataFrame(rows, columns=UNIVERSAL_COLUMNS)
