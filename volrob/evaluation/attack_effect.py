"""How much each white-box attack setting changed each model, case by case: the paired statistics of a report.

For every white-box cell (one model, attack and budget) and one region and metric, over the cases both scores
exist for: the mean clean and adversarial score, the mean change ``clean − adversarial`` (the drop; positive =
the attack hurt, for Dice-like metrics) with a percentile-bootstrap 95 % interval (seeded, restarted per cell), the
two-sided paired Wilcoxon signed-rank p-value and its effect size (matched-pairs rank-biserial correlation of the
drops, in [-1, 1]: 1 when every case got worse), the largest L∞ (1/255) and the mean SSIM of the perturbations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from volrob.errors import ConfigError, DataError
from volrob.evaluation.summary import bootstrap_mean_ci, paired_wilcoxon

EFFECT_COLUMNS = ["model", "cell", "attack", "budget_key", "budget", "eps", "region", "metric", "n", "clean_mean",
                  "adversarial_mean", "drop", "drop_ci_low", "drop_ci_high", "wilcoxon_p", "effect_size",
                  "linf_255_max", "ssim_mean"]
_NEED = ("cell", "case", "model", "white_box", "attack", "budget_key", "budget", "eps", "region", "metric", "clean",
         "adversarial", "linf_255", "ssim")


def attack_effects(results: pd.DataFrame, *, region: str = "WT", metric: str = "dice", seed: int = 0,
                   n_boot: int = 2000) -> pd.DataFrame:
    """One row per white-box cell of ``results`` (columns :data:`EFFECT_COLUMNS`), in the cells' order."""
    missing = [c for c in _NEED if c not in results.columns]
    if missing:
        raise ConfigError(f"attack_effects: results lack column(s) {missing}")
    rows = results[results["white_box"].astype(bool) & (results["region"] == region)
                   & (results["metric"] == metric)]
    if rows.empty:
        raise DataError(f"attack_effects: no white-box rows of region {region!r} and metric {metric!r}")
    out = []
    for cell, g in rows.groupby("cell", sort=False):
        g = g[np.isfinite(g["clean"].to_numpy(float)) & np.isfinite(g["adversarial"].to_numpy(float))]
        if g.empty:
            continue
        clean, adv = g["clean"].to_numpy(float), g["adversarial"].to_numpy(float)
        drop = clean - adv
        low, high = bootstrap_mean_ci(drop, n_boot=n_boot, seed=seed)
        test = paired_wilcoxon(clean, adv)
        first = g.iloc[0]
        out.append({"model": first["model"], "cell": cell, "attack": first["attack"],
                    "budget_key": first["budget_key"], "budget": first["budget"], "eps": first["eps"],
                    "region": region, "metric": metric, "n": len(g), "clean_mean": float(clean.mean()),
                    "adversarial_mean": float(adv.mean()), "drop": float(drop.mean()), "drop_ci_low": low,
                    "drop_ci_high": high, "wilcoxon_p": test.pvalue, "effect_size": test.effect_size,
                    "linf_255_max": float(g["linf_255"].max()), "ssim_mean": float(g["ssim"].mean())})
    return pd.DataFrame(out, columns=EFFECT_COLUMNS)
