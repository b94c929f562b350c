"""Transfer matrices from the tidy transfer table: mean Dice drop, attack success rate, transfer ratio, and the
sanity flag "black-box stronger than white-box".

For one attack cell group (attack + budget) and one region:

- ``drop[s, t]``: mean over cases of ``clean - adversarial`` Dice of target ``t`` under perturbations crafted on
  source ``s``;
- ``success[s, t]``: share of cases whose Dice fell by at least ``success_drop`` (default 0.5) of its clean value
  (cases with clean Dice 0 have nothing to lose and are not counted as successes);
- ``ratio[s, t] = drop[s, t] / drop[t, t]``: the black-box drop as a share of the target's own white-box drop
  (undefined where ``t`` is not a source or its white-box drop is not positive).

The flag is raised for any ``s != t`` with ``drop[s, t] > drop[t, t] + tolerance``: a transferred attack hurting a
model more than a white-box attack on it suggests the white-box attack is weak (e.g. masked gradients).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MATRIX_COLUMNS = ["attack", "budget_key", "budget", "source", "target", "white_box", "region", "n", "clean_dice",
                  "adversarial_dice", "dice_drop", "success_rate", "transfer_ratio"]


def _group_key(rows: pd.DataFrame) -> pd.Series:
    return rows["attack"] + "|" + rows["budget_key"].astype(str) + "|" + rows["budget"].astype(str)


def transfer_matrices(table: pd.DataFrame, *, region: str = "WT", success_drop: float = 0.5) -> pd.DataFrame:
    """One row per (attack, budget, source, target): the numbers of the module docstring (tidy)."""
    d = table[(table["metric"] == "dice") & (table["region"] == region)].copy()
    if d.empty:
        return pd.DataFrame(columns=MATRIX_COLUMNS)
    d["success"] = (d["clean"] > 0) & (d["adversarial"] <= (1.0 - success_drop) * d["clean"])
    d["drop"] = d["clean"] - d["adversarial"]
    keys = ["attack", "budget_key", "budget", "source", "target"]
    g = d.groupby(keys, sort=False, dropna=False).agg(
        white_box=("white_box", "first"), n=("case", "nunique"), clean_dice=("clean", "mean"),
        adversarial_dice=("adversarial", "mean"), dice_drop=("drop", "mean"),
        success_rate=("success", "mean")).reset_index()
    g["region"] = region
    white = g[g["source"] == g["target"]].set_index(["attack", "budget_key", "budget", "target"])["dice_drop"]
    ratios = []
    for row in g.itertuples():
        ref = white.get((row.attack, row.budget_key, row.budget, row.target), np.nan)
        ratios.append(row.dice_drop / ref if np.isfinite(ref) and ref > 0 else np.nan)
    g["transfer_ratio"] = ratios
    return g[MATRIX_COLUMNS]


def pivot(matrices: pd.DataFrame, value: str, sources: list[str], targets: list[str]) -> pd.DataFrame:
    """``value`` as a sources × targets frame for one attack cell group (rows/columns in the given order)."""
    return matrices.pivot(index="source", columns="target", values=value).reindex(index=sources, columns=targets)


def blackbox_stronger(matrices: pd.DataFrame, tolerance: float = 0.02) -> list[dict[str, Any]]:
    """Every ``(attack, budget, s, t)`` with ``s != t`` whose drop exceeds the white-box drop on ``t`` by more
    than ``tolerance``; each hit with a one-line ``text``."""
    hits = []
    white = matrices[matrices["source"] == matrices["target"]].set_index(
        ["attack", "budget_key", "budget", "target"])["dice_drop"]
    for row in matrices[matrices["source"] != matrices["target"]].itertuples():
        ref = white.get((row.attack, row.budget_key, row.budget, row.target))
        if ref is None or not np.isfinite(ref):
            continue
        if row.dice_drop > ref + tolerance:
            hits.append({"attack": row.attack, "budget_key": row.budget_key, "budget": row.budget,
                         "source": row.source, "target": row.target, "blackbox_drop": float(row.dice_drop),
                         "whitebox_drop": float(ref),
                         "text": f"{row.attack} {row.budget_key}={row.budget}: {row.source} -> {row.target} drops "
                                 f"{row.region} Dice by {row.dice_drop:.3f}, more than white-box on {row.target} "
                                 f"({ref:.3f})"})
    return hits
