"""Transfer matrices from the tidy result table: mean Dice drop, attack success rate and transfer ratio per
(attack, budget, source, target); the "black-box stronger than white-box" flag reads them
(:func:`volrob.evaluation.sanity.blackbox_stronger`).

For one attack cell group (attack + budget) and one region:

- ``drop[s, t]``: mean over cases of ``clean - adversarial`` Dice of target ``t`` under perturbations crafted on
  source ``s``;
- ``success[s, t]``: share of cases whose Dice fell by at least ``success_drop`` (default 0.5) of its clean value
  (cases with clean Dice 0 have nothing to lose and are not counted as successes);
- ``ratio[s, t] = drop[s, t] / drop[t, t]``: the black-box drop as a share of the target's own white-box drop
  (undefined where ``t`` is not a source or its white-box drop is not positive).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MATRIX_COLUMNS = ["attack", "budget_key", "budget", "source", "model", "white_box", "region", "n", "clean_dice",
                  "adversarial_dice", "dice_drop", "success_rate", "transfer_ratio"]


def transfer_matrices(table: pd.DataFrame, *, region: str = "WT", success_drop: float = 0.5) -> pd.DataFrame:
    """One row per (attack, budget, source, scored model): the numbers of the module docstring (tidy). ``table``
    has the columns of ``results.csv`` (``model`` is the target that was scored)."""
    d = table[(table["metric"] == "dice") & (table["region"] == region)].copy()
    if d.empty:
        return pd.DataFrame(columns=MATRIX_COLUMNS)
    d["success"] = (d["clean"] > 0) & (d["adversarial"] <= (1.0 - success_drop) * d["clean"])
    d["drop"] = d["clean"] - d["adversarial"]
    keys = ["attack", "budget_key", "budget", "source", "model"]
    g = d.groupby(keys, sort=False, dropna=False).agg(
        white_box=("white_box", "first"), n=("case", "nunique"), clean_dice=("clean", "mean"),
        adversarial_dice=("adversarial", "mean"), dice_drop=("drop", "mean"),
        success_rate=("success", "mean")).reset_index()
    g["region"] = region
    white = g[g["source"] == g["model"]].set_index(["attack", "budget_key", "budget", "model"])["dice_drop"]
    ratios = []
    for row in g.itertuples():
        ref = white.get((row.attack, row.budget_key, row.budget, row.model), np.nan)
        ratios.append(row.dice_drop / ref if np.isfinite(ref) and ref > 0 else np.nan)
    g["transfer_ratio"] = ratios
    return g[MATRIX_COLUMNS]


def pivot(matrices: pd.DataFrame, value: str, sources: list[str], targets: list[str]) -> pd.DataFrame:
    """``value`` as a sources × targets frame for one attack cell group (rows/columns in the given order)."""
    return matrices.pivot(index="source", columns="model", values=value).reindex(index=sources, columns=targets)
