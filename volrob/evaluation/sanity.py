"""Sanity flags for a robustness grid, in the spirit of AutoAttack's checks but made for segmentation.

A raised flag does not prove anything is wrong; it says a number looks like gradient masking or a broken attack
and deserves a look. All comparisons use the mean Dice of one region (``region``, default WT) over the cases of a
cell. Thresholds (all configurable, see :class:`SanityThresholds`):

- ``no_collapse_at_max_budget``: for an undefended model, the largest ``eps`` of an untargeted *iterative*
  gradient attack (more than one step) leaves adversarial Dice above ``collapse_ratio`` (0.5) × clean Dice
  (skipped when clean Dice is below ``min_clean_dice``, 0.1: nothing to collapse). Single-step attacks (FGSM)
  and budgets that are not an ``eps`` (VAFA's quantisation ``q_max``) carry no such expectation.
- ``more_steps_weaker``: the same attack, model, options and sliding-window settings with more steps gives
  adversarial Dice higher by more than ``tolerance`` (0.02) than with fewer steps.
- ``noise_stronger_than_gradient``: Gaussian noise at the same eps gives adversarial Dice lower by more than
  ``tolerance`` than an untargeted gradient attack.
- ``zero_gradient``: a gradient attack's per-step loss (plus its final loss) never changes by more than
  ``loss_atol`` (1e-9) in any case, or its perturbation is zero in every case.
- ``budget_not_monotone``: a larger budget (eps, or a swept budget such as q_max) of the same attack, model and
  options gives adversarial Dice higher by more than ``tolerance`` than a smaller one.

Inputs are tidy: the combined result rows (columns ``cell``, ``region``, ``metric``, ``clean``, ``adversarial``,
``linf_255``), a cell table (one row per cell: ``cell``, ``model``, ``defended``, ``attack``, ``kind`` in
gradient/noise, ``targeted``, ``budget_key``, ``budget``, ``eps``, ``steps``, ``options`` and ``window`` as
canonical JSON) and
each cell's loss histories (one list per case).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from volrob.errors import ConfigError

CHECKS = ("no_collapse_at_max_budget", "more_steps_weaker", "noise_stronger_than_gradient", "zero_gradient",
          "budget_not_monotone", "blackbox_stronger_than_whitebox")
GUIDE: dict[str, tuple[str, str]] = {
    "no_collapse_at_max_budget": (
        "an undefended model usually loses more than half of its Dice to an iterative attack at the largest budget; "
        "keeping more suggests a weak attack (too few steps, a step size off the budget, a masked or zero gradient) "
        "or, on easy data with large, high-contrast lesions, a budget too small to move the lesion boundary",
        "rerun that cell with more steps or restarts and with gradient: autograd (rules out the windowed gradient); "
        "add a larger eps to the grid (16, 32): a masked gradient keeps the model standing there too, a weak "
        "budget does not"),
    "more_steps_weaker": (
        "more iterations of the same attack should never leave the model better off; when they do, the step size "
        "may be too large (oscillation) or the loss may not follow Dice",
        "compare the loss histories in the unit files; set alpha explicitly (e.g. 2.5 * eps / steps) or use restarts"),
    "noise_stronger_than_gradient": (
        "random noise of the same budget should not beat a gradient attack; if it does, the gradient is "
        "uninformative (masked, saturated or wrong sign)",
        "check that the model's output mode matches the attack loss, try loss: bce or segpgd, and gradient: autograd"),
    "zero_gradient": (
        "a gradient attack whose loss never changes, or that never moves the input, received no usable gradient",
        "check that the network is differentiable end to end (no argmax or thresholding inside it) and that the "
        "brain mask is not empty"),
    "budget_not_monotone": (
        "a larger budget of the same attack should hurt at least as much as a smaller one",
        "increase steps at the larger budget, or scale alpha with eps (the default does)"),
    "blackbox_stronger_than_whitebox": (
        "a perturbation crafted on another model hurts this model more than one crafted on it with its own "
        "gradient: its white-box attack is weak (often masked gradients)",
        "strengthen the white-box attack on that target (more steps, restarts, autograd gradient) before reading "
        "its robustness from the matrix"),
}
CELL_COLUMNS = ["cell", "model", "defended", "attack", "kind", "targeted", "budget_key", "budget", "eps",
                "steps", "options", "window"]


@dataclass
class SanityThresholds:
    """Documented thresholds of the checks (see the module docstring)."""

    collapse_ratio: float = 0.5
    min_clean_dice: float = 0.1
    tolerance: float = 0.02
    loss_atol: float = 1e-9

    def __post_init__(self) -> None:
        for name in ("collapse_ratio", "min_clean_dice", "tolerance", "loss_atol"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"sanity.{name} must be a finite number >= 0, got {value!r}")


@dataclass
class SanityFlag:
    """One check's outcome: raised or not, a one-line message, the numbers behind it and the cells involved."""

    name: str
    raised: bool
    applicable: bool
    message: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)

    @property
    def meaning(self) -> str:
        """What a raised flag suggests."""
        return GUIDE[self.name][0]

    @property
    def advice(self) -> str:
        """What to try next."""
        return GUIDE[self.name][1]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "meaning": self.meaning, "advice": self.advice}


def cell_dice(results: pd.DataFrame, region: str) -> pd.DataFrame:
    """Per cell: mean clean and adversarial Dice of ``region`` and the largest L∞ perturbation (1/255 units)."""
    rows = results[(results["metric"] == "dice") & (results["region"] == region)]
    out = rows.groupby("cell").agg(clean=("clean", "mean"), adversarial=("adversarial", "mean"))
    out["linf_max"] = results.groupby("cell")["linf_255"].max()
    return out


def _without(options: str, *keys: str) -> str:
    data = json.loads(options)
    return json.dumps({k: v for k, v in data.items() if k not in keys}, sort_keys=True)


def _flag(name: str, hits: list[dict[str, Any]], applicable: bool, what: str) -> SanityFlag:
    cells = sorted({c for h in hits for c in h["cells"]})
    if not applicable:
        return SanityFlag(name, False, False, f"not applicable: {what}")
    if not hits:
        return SanityFlag(name, False, True, "ok")
    return SanityFlag(name, True, True, f"{len(hits)} case(s): " + "; ".join(h["text"] for h in hits), hits, cells)


def _no_collapse(cells: pd.DataFrame, t: SanityThresholds, region: str) -> SanityFlag:
    pool = cells[(cells["kind"] == "gradient") & ~cells["targeted"] & ~cells["defended"]
                 & (cells["budget_key"] == "eps") & (cells["steps"] > 1) & cells["budget"].notna()
                 & cells["clean"].notna()]
    hits, applicable = [], False
    for (model, attack, key), g in pool.groupby(["model", "attack", "budget_key"], sort=True):
        top = g[g["budget"] == g["budget"].max()]
        best = top.loc[top["adversarial"].idxmin()]
        if best["clean"] < t.min_clean_dice:
            continue
        applicable = True
        ratio = best["adversarial"] / best["clean"]
        if ratio > t.collapse_ratio:
            hits.append({"cells": [best["cell"]], "model": model, "attack": attack, "budget_key": key,
                         "budget": float(best["budget"]), "clean": float(best["clean"]),
                         "adversarial": float(best["adversarial"]), "ratio": float(ratio),
                         "text": f"{model}/{attack} at {key}={best['budget']:g} keeps {region} Dice "
                                 f"{best['adversarial']:.3f} of clean {best['clean']:.3f} ({ratio:.0%})"})
    return _flag("no_collapse_at_max_budget", hits, applicable,
                 "no untargeted iterative eps-budget attack on an undefended model with a usable clean Dice")


def _weaker_pairs(g: pd.DataFrame, key: str, tolerance: float) -> list[tuple[pd.Series, pd.Series]]:
    """Pairs of cells (lo, hi) where ``hi`` has the larger ``key`` yet leaves Dice higher by more than ``tolerance``."""
    g = g.sort_values(key)
    return [(g.iloc[i], g.iloc[j]) for i in range(len(g)) for j in range(i + 1, len(g))
            if g.iloc[j][key] > g.iloc[i][key] and g.iloc[j]["adversarial"] > g.iloc[i]["adversarial"] + tolerance]


def _more_steps(cells: pd.DataFrame, t: SanityThresholds, region: str) -> SanityFlag:
    pool = cells[(cells["kind"] == "gradient") & cells["steps"].notna()].copy()
    pool["group"] = [_without(o, "steps", "alpha") + w for o, w in zip(pool["options"], pool["window"], strict=True)]
    hits, applicable = [], False
    for (model, attack, _), g in pool.groupby(["model", "attack", "group"], sort=True):
        if g["steps"].nunique() < 2:
            continue
        applicable = True
        for lo, hi in _weaker_pairs(g, "steps", t.tolerance):
            hits.append({"cells": [lo["cell"], hi["cell"]], "model": model, "attack": attack,
                         "steps": [int(lo["steps"]), int(hi["steps"])],
                         "adversarial": [float(lo["adversarial"]), float(hi["adversarial"])],
                         "text": f"{model}/{attack}: {int(hi['steps'])} steps give {region} Dice "
                                 f"{hi['adversarial']:.3f} > {lo['adversarial']:.3f} with {int(lo['steps'])} steps"})
    return _flag("more_steps_weaker", hits, applicable, "no attack run with different step counts")


def _noise_stronger(cells: pd.DataFrame, t: SanityThresholds, region: str) -> SanityFlag:
    noise = cells[(cells["kind"] == "noise") & cells["eps"].notna()]
    grad = cells[(cells["kind"] == "gradient") & ~cells["targeted"] & cells["eps"].notna()]
    hits, applicable = [], False
    for _, n in noise.iterrows():
        peers = grad[(grad["model"] == n["model"]) & (grad["eps"] == n["eps"])]
        for _, g in peers.iterrows():
            applicable = True
            if n["adversarial"] < g["adversarial"] - t.tolerance:
                hits.append({"cells": [n["cell"], g["cell"]], "model": n["model"], "eps": float(n["eps"]),
                             "noise": float(n["adversarial"]), "gradient": float(g["adversarial"]),
                             "text": f"{n['model']} eps={n['eps']:g}: {n['attack']} gives {region} Dice "
                                     f"{n['adversarial']:.3f} < {g['attack']} {g['adversarial']:.3f}"})
    return _flag("noise_stronger_than_gradient", hits, applicable, "no noise and gradient cell at the same eps")


def _zero_gradient(cells: pd.DataFrame, losses: Mapping[str, Sequence[Sequence[float]]],
                   t: SanityThresholds) -> SanityFlag:
    pool = cells[cells["kind"] == "gradient"]
    hits = []
    for _, c in pool.iterrows():
        hist = [list(h) for h in losses.get(c["cell"], []) if len(h) >= 2]
        spread = max((max(h) - min(h) for h in hist), default=None)
        flat = spread is not None and spread <= t.loss_atol
        still = c["linf_max"] == 0
        if flat or still:
            why = "loss never changes" if flat else "perturbation is zero in every case"
            hits.append({"cells": [c["cell"]], "loss_spread": spread, "linf_max_255": float(c["linf_max"]),
                         "text": f"{c['cell']}: {why}"})
    return _flag("zero_gradient", hits, not pool.empty, "no gradient attack in the grid")


def _budget_monotone(cells: pd.DataFrame, t: SanityThresholds, region: str) -> SanityFlag:
    pool = cells[cells["budget"].notna() & cells["kind"].isin(["gradient", "noise"])].copy()
    pool["group"] = [_without(o, k) + w
                     for o, k, w in zip(pool["options"], pool["budget_key"], pool["window"], strict=True)]
    hits, applicable = [], False
    for (model, attack, key, _), g in pool.groupby(["model", "attack", "budget_key", "group"], sort=True):
        if g["budget"].nunique() < 2:
            continue
        applicable = True
        for lo, hi in _weaker_pairs(g, "budget", t.tolerance):
            hits.append({"cells": [lo["cell"], hi["cell"]], "model": model, "attack": attack,
                         "budget_key": key, "budget": [float(lo["budget"]), float(hi["budget"])],
                         "adversarial": [float(lo["adversarial"]), float(hi["adversarial"])],
                         "text": f"{model}/{attack}: {key}={hi['budget']:g} gives {region} Dice "
                                 f"{hi['adversarial']:.3f} > {lo['adversarial']:.3f} at {key}={lo['budget']:g}"})
    return _flag("budget_not_monotone", hits, applicable, "no attack run at two budgets")


def run_checks(results: pd.DataFrame, cells: pd.DataFrame, losses: Mapping[str, Sequence[Sequence[float]]],
               thresholds: SanityThresholds | None = None, *, region: str = "WT") -> list[SanityFlag]:
    """Every check of :data:`CHECKS` on a grid's results, in that order."""
    t = thresholds or SanityThresholds()
    missing = sorted(set(CELL_COLUMNS) - set(cells.columns))
    if missing:
        raise ConfigError(f"sanity: cell table lacks column(s) {missing}")
    table = cells.set_index("cell", drop=False).join(cell_dice(results, region))
    table["targeted"] = table["targeted"].astype(bool)
    table["defended"] = table["defended"].astype(bool)
    table = table[table["adversarial"].notna()]
    return [_no_collapse(table, t, region), _more_steps(table, t, region), _noise_stronger(table, t, region),
            _zero_gradient(table, losses, t), _budget_monotone(table, t, region)]


def blackbox_stronger(matrices: pd.DataFrame, tolerance: float = 0.02) -> SanityFlag:
    """The transfer check: any ``(attack, budget, s, t)`` with ``s != t`` whose mean Dice drop exceeds the
    white-box drop on ``t`` by more than ``tolerance`` (``matrices``: the tidy transfer matrices)."""
    name = "blackbox_stronger_than_whitebox"
    white = matrices[matrices["source"] == matrices["model"]].set_index(
        ["attack", "budget_key", "budget", "model"])["dice_drop"]
    hits, applicable = [], False
    for row in matrices[matrices["source"] != matrices["model"]].itertuples():
        ref = white.get((row.attack, row.budget_key, row.budget, row.model))
        if ref is None or not math.isfinite(ref):
            continue
        applicable = True
        if row.dice_drop > ref + tolerance:
            hits.append({"cells": [], "attack": row.attack, "budget_key": row.budget_key, "budget": row.budget,
                         "source": row.source, "model": row.model, "blackbox_drop": float(row.dice_drop),
                         "whitebox_drop": float(ref),
                         "text": f"{row.attack} {row.budget_key}={row.budget}: {row.source} -> {row.model} drops "
                                 f"{row.region} Dice by {row.dice_drop:.3f}, more than white-box on {row.model} "
                                 f"({ref:.3f})"})
    return _flag(name, hits, applicable, "no target that is also a source")


def format_flags(flags: Sequence[SanityFlag]) -> str:
    """Raised flags with what they mean and what to try, or one ``all clear`` line naming how many checks applied."""
    raised = [f for f in flags if f.raised]
    if not raised:
        return f"sanity checks: all clear ({sum(f.applicable for f in flags)} checks)"
    lines = []
    for f in raised:
        lines += [f"!! SANITY FLAG: {f.name}: {f.message}", f"   what it means: {f.meaning}",
                  f"   what to try: {f.advice}"]
    return "\n".join(lines)
