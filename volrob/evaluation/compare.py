"""Defence comparison of a multi-model grid: per model × setting × region Dice with bootstrap CIs, and paired tests
against a reference model.

A *setting* is one attack with its full options and budget: the cell id without its model prefix, so the same
setting of two models pairs their cells. For every (model, setting, region) ``comparison.csv`` holds the number of
cases, the mean clean and adversarial Dice with percentile-bootstrap 95 % CIs, and (for models other than the
reference) the paired difference ``model - reference`` of adversarial and of clean Dice on the same cases, its
bootstrap CI and paired Wilcoxon signed-rank p-values (two-sided, and one-sided "model greater" for adversarial
Dice). Bootstraps restart from ``seed`` for every group, so a row does not depend on the other rows or on the
order of the input rows. Cases whose Dice is not finite for one of the two models are left out of that pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from volrob.data.labels import REGIONS
from volrob.errors import ConfigError, DataError
from volrob.evaluation.summary import bootstrap_mean_ci, paired_wilcoxon

COMPARISON_COLUMNS = [
    "model", "defence", "reference", "setting", "attack", "budget_key", "budget", "eps", "region", "n",
    "clean_dice", "clean_ci_low", "clean_ci_high", "adversarial_dice", "adversarial_ci_low", "adversarial_ci_high",
    "n_paired", "diff_adversarial", "diff_adversarial_ci_low", "diff_adversarial_ci_high", "p_adversarial",
    "p_adversarial_greater", "diff_clean", "diff_clean_ci_low", "diff_clean_ci_high", "p_clean",
]
_NEED = ("model", "cell", "attack", "budget_key", "budget", "eps", "case", "region", "metric", "clean",
         "adversarial")


def resolve_reference(models: Sequence[Any], reference: str | None) -> str | None:
    """The reference model's name: ``reference`` if given (must be a model), else the only undefended model;
    ``None`` (no comparison) when no reference is named and zero or several models are undefended (e.g. a grid
    comparing architectures)."""
    names = [m.name for m in models]
    if reference is not None:
        if reference not in names:
            raise ConfigError(f"reference: {reference!r} is not one of the models {names}")
        return reference
    clean = [m.name for m in models if not m.defended]
    return clean[0] if len(clean) == 1 else None


def _setting(cell: str) -> str:
    return cell.split("__", 1)[1]


def _stats(x: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    if x.size == 0:
        return np.nan, np.nan, np.nan
    low, high = bootstrap_mean_ci(x, n_boot=n_boot, seed=seed)
    return float(x.mean()), low, high


def _paired(a: pd.Series, b: pd.Series, n_boot: int, seed: int, *, greater: bool) -> dict[str, float]:
    ok = a.index[np.isfinite(a.to_numpy(float)) & np.isfinite(b.reindex(a.index).to_numpy(float))]
    a, b = a.loc[ok].sort_index(), b.loc[ok].sort_index()
    if a.empty:
        return {"n": 0, "diff": np.nan, "low": np.nan, "high": np.nan, "p": np.nan, "p_greater": np.nan}
    mean, low, high = _stats((a - b).to_numpy(float), n_boot, seed)
    out = {"n": len(a), "diff": mean, "low": low, "high": high, "p": paired_wilcoxon(a, b).pvalue}
    out["p_greater"] = paired_wilcoxon(a, b, alternative="greater").pvalue if greater else np.nan
    return out


def _per_case(rows: pd.DataFrame, column: str, where: str) -> pd.Series:
    if rows["case"].duplicated().any():
        raise DataError(f"comparison: {where} has several Dice rows for the same case")
    return rows.set_index("case")[column].astype(float)


def compare_models(results: pd.DataFrame, defences: Mapping[str, str], reference: str, *, n_boot: int = 2000,
                   seed: int = 0) -> pd.DataFrame:
    """The comparison table (:data:`COMPARISON_COLUMNS`) of a grid's combined ``results.csv`` rows."""
    missing = [c for c in _NEED if c not in results.columns]
    if missing:
        raise ConfigError(f"comparison: results are missing columns {missing}")
    dice = results[results["metric"] == "dice"].copy()
    if dice.empty:
        raise DataError("comparison: no Dice rows in the results")
    models = list(pd.unique(dice["model"]))
    if reference not in models:
        raise ConfigError(f"reference: {reference!r} has no rows in the results (models {models})")
    unknown = [m for m in models if m not in defences]
    if unknown:
        raise ConfigError(f"comparison: no defence name for model(s) {unknown}")
    dice["setting"] = dice["cell"].map(_setting)
    groups = {k: g for k, g in dice.groupby(["model", "setting", "region"], sort=False)}
    settings = list(pd.unique(dice["setting"]))
    regions = [r for r in REGIONS if r in set(dice["region"])] + sorted(set(dice["region"]) - set(REGIONS))
    records = []
    for model in models:
        for setting in settings:
            for region in regions:
                g = groups.get((model, setting, region))
                if g is None:
                    continue
                where = f"model {model!r}, setting {setting!r}, region {region!r}"
                clean, adv = _per_case(g, "clean", where), _per_case(g, "adversarial", where)
                c_mean, c_low, c_high = _stats(clean[np.isfinite(clean)].sort_index().to_numpy(), n_boot, seed)
                a_mean, a_low, a_high = _stats(adv[np.isfinite(adv)].sort_index().to_numpy(), n_boot, seed)
                first = g.iloc[0]
                rec: dict[str, Any] = {
                    "model": model, "defence": defences[model], "reference": reference, "setting": setting,
                    "attack": first["attack"], "budget_key": first["budget_key"], "budget": first["budget"],
                    "eps": first["eps"], "region": region, "n": len(g), "clean_dice": c_mean, "clean_ci_low": c_low,
                    "clean_ci_high": c_high, "adversarial_dice": a_mean, "adversarial_ci_low": a_low,
                    "adversarial_ci_high": a_high,
                }
                ref = groups.get((reference, setting, region))
                if model != reference and ref is not None:
                    rwhere = f"model {reference!r}, setting {setting!r}, region {region!r}"
                    if set(g["case"]) != set(ref["case"]):
                        raise DataError(f"comparison: {model!r} and reference {reference!r} cover different cases "
                                        f"in setting {setting!r}")
                    d_adv = _paired(adv, _per_case(ref, "adversarial", rwhere), n_boot, seed, greater=True)
                    d_clean = _paired(clean, _per_case(ref, "clean", rwhere), n_boot, seed, greater=False)
                    rec.update({"n_paired": d_adv["n"], "diff_adversarial": d_adv["diff"],
                                "diff_adversarial_ci_low": d_adv["low"], "diff_adversarial_ci_high": d_adv["high"],
                                "p_adversarial": d_adv["p"], "p_adversarial_greater": d_adv["p_greater"],
                                "diff_clean": d_clean["diff"], "diff_clean_ci_low": d_clean["low"],
                                "diff_clean_ci_high": d_clean["high"], "p_clean": d_clean["p"]})
                records.append(rec)
    return pd.DataFrame.from_records(records, columns=COMPARISON_COLUMNS)


def setting_label(row: Mapping[str, Any]) -> str:
    """A short readable name of a row's setting, e.g. ``pgd eps=4`` (the hash only if needed elsewhere)."""
    key, budget = row.get("budget_key"), row.get("budget")
    if isinstance(key, str) and key and budget == budget:
        return f"{row['attack']} {key}={float(budget):g}"
    return str(row["attack"])


def format_comparison(table: pd.DataFrame, region: str = "WT") -> str:
    """A short text table of ``region``: per setting and model, adversarial Dice and the difference to the
    reference with its CI and two-sided p."""
    rows = table[table["region"] == region]
    lines = [f"{'setting':<24} {'model':<16} {'defence':<12} {'clean':>6} {'adv':>6}  vs reference"]
    for r in rows.to_dict("records"):
        vs = "reference" if r["model"] == r["reference"] else (
            f"{r['diff_adversarial']:+.3f} [{r['diff_adversarial_ci_low']:+.3f}, {r['diff_adversarial_ci_high']:+.3f}]"
            f" p={r['p_adversarial']:.3g}")
        lines.append(f"{setting_label(r):<24} {r['model']:<16} {r['defence']:<12} {r['clean_dice']:>6.3f} "
                     f"{r['adversarial_dice']:>6.3f}  {vs}")
    return "\n".join(lines)
