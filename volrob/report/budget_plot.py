"""Score against attack budget, white-box: a table of means with bootstrap CIs per model, attack and budget (budget 0
holds the clean score), and its figure (one panel per attack, one line per model).

Attacks without a budget (``budget_key`` empty or NaN: a fixed perturbation, a defaulted noise) have no budget axis
and are left out of :func:`budget_table`; their single setting is in ``summary.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from volrob.errors import ConfigError, DataError
from volrob.evaluation.summary import bootstrap_mean_ci
from volrob.report.checks import as_bool, check_columns, finite
from volrob.report.figure import check_png_path, new_figure, save_png
from volrob.report.labels import budget_axis_label, cases_text, has_budget, metric_label, metric_limits

PANELS_PER_ROW = 3
"""Attacks side by side before a new row of panels starts (a wide figure shrinks to unreadable on a page)."""
BUDGET_COLUMNS: list[str] = ["model", "attack", "budget_key", "budget", "n", "mean", "ci_low", "ci_high"]
_NEED = ("model", "case", "attack", "budget_key", "budget", "white_box", "region", "metric", "clean", "adversarial")


def _selection(results: pd.DataFrame, region: str, metric: str) -> pd.DataFrame:
    """White-box rows of ``region`` and ``metric`` whose attack has a budget, with numeric budget and scores."""
    what = "budget_table"
    check_columns(results, _NEED, what, "results")
    white = results[as_bool(results, "white_box", what)]
    if white.empty:
        raise DataError(f"{what}: results have no white-box rows (white_box true)")
    sel = white[(white["region"] == region) & (white["metric"] == metric)]
    if sel.empty:
        raise ConfigError(f"{what}: no white-box rows with region {region!r} and metric {metric!r}")
    sel = sel[sel["budget_key"].map(has_budget).astype(bool)]
    return sel.assign(**{c: finite(sel, c, what) for c in ("budget", "clean", "adversarial")})


def _stats(values: pd.Series, n_boot: int, seed: int) -> dict[str, float | int]:
    """``n``, mean and bootstrap 95 % CI of per-case ``values`` (taken in case order, the seed restarted)."""
    x = values.sort_index().to_numpy(dtype=float)
    low, high = bootstrap_mean_ci(x, n_boot=n_boot, seed=seed)
    return {"n": int(x.size), "mean": float(x.mean()), "ci_low": low, "ci_high": high}


def budget_table(results: pd.DataFrame, *, region: str = "WT", metric: str = "dice", seed: int = 0,
                 n_boot: int = 2000) -> pd.DataFrame:
    """One row per white-box (model, attack, budget) of ``results.csv`` rows (:data:`BUDGET_COLUMNS`): ``n`` cases,
    mean ``adversarial`` score and its percentile-bootstrap 95 % CI (:func:`bootstrap_mean_ci`, ``seed`` restarted
    per group, values in case order); first, per (model, attack), a budget-0 row with the ``clean`` score over the
    same cases. Attacks without a budget are left out (an empty table when no attack has one)."""
    what = "budget_table"
    sel = _selection(results, region, metric)
    rows: list[dict[str, object]] = []
    for (model, attack), g in sel.groupby(["model", "attack"], sort=False):
        keys = list(pd.unique(g["budget_key"]))
        if len(keys) > 1:
            raise DataError(f"{what}: model {model!r}, attack {attack!r} has several budget keys {keys}")
        dup = g[g.duplicated(["budget", "case"])]
        if not dup.empty:
            first = dup.iloc[0]
            raise DataError(f"{what}: model {model!r}, attack {attack!r}, budget {first['budget']:g} has several "
                            f"rows for case {first['case']!r} (two settings of one attack and budget?)")
        base = {"model": model, "attack": attack, "budget_key": keys[0]}
        clean = g.drop_duplicates("case").set_index("case")["clean"]
        rows.append({**base, "budget": 0.0, **_stats(clean, n_boot, seed)})
        for budget, b in g.groupby("budget", sort=True):
            rows.append({**base, "budget": float(budget), **_stats(b.set_index("case")["adversarial"], n_boot, seed)})
    return pd.DataFrame(rows, columns=BUDGET_COLUMNS)


def budget_figure(table: pd.DataFrame, *, region: str = "WT", metric: str = "dice") -> Figure:
    """One panel per attack: mean score against budget (0 = clean) with its shaded 95 % CI, one line per model.
    ``table`` has the columns of :func:`budget_table`; Dice, NSD and lesion Dice axes span 0..1."""
    what = "budget_figure"
    check_columns(table, BUDGET_COLUMNS, what)
    if table.empty:
        raise DataError(f"{what}: table has no rows (no white-box attack with a budget)")
    t = table.assign(**{c: finite(table, c, what) for c in ("budget", "n", "mean", "ci_low", "ci_high")})
    attacks, models = list(pd.unique(t["attack"])), list(pd.unique(t["model"]))
    colours = colormaps["tab10" if len(models) <= 10 else "tab20"]
    cols = min(len(attacks), PANELS_PER_ROW)
    rows_n = -(-len(attacks) // cols)
    fig = new_figure((max(5.5, 4.3 * cols + 1.5), 0.6 + 3.6 * rows_n))
    grid = fig.subplots(rows_n, cols, squeeze=False, sharey=True)
    for ax in grid.flat[len(attacks):]:
        fig.delaxes(ax)
    axes = list(grid.flat[:len(attacks)])
    for ax, attack in zip(axes, attacks, strict=True):
        rows = t[t["attack"] == attack]
        for i, model in enumerate(models):
            m = rows[rows["model"] == model].sort_values("budget", kind="stable")
            if m.empty:
                continue
            colour = colours(i % colours.N)
            x = m["budget"].to_numpy()
            ax.plot(x, m["mean"].to_numpy(), marker="o", markersize=4, color=colour, label=str(model))
            ax.fill_between(x, m["ci_low"].to_numpy(), m["ci_high"].to_numpy(), color=colour, alpha=0.2,
                            linewidth=0)
        keys = [k for k in pd.unique(rows["budget_key"])]
        ax.set_xlabel(" / ".join(budget_axis_label(k) for k in keys) + "  (0 = clean)")
        ax.set_xlim(left=0.0)
        single = "\nn = 1: no interval" if (rows["n"] == 1).any() else ""
        ax.set_title(f"{attack}, {cases_text(rows['n'].astype(int))}{single}")
        ax.grid(True, alpha=0.3)
    metric_limits(axes[0], metric, np.concatenate([t["mean"].to_numpy(), t["ci_high"].to_numpy()]))
    for ax in grid[:, 0]:
        ax.set_ylabel(f"mean {metric_label(metric)}, {region}\n(95 % bootstrap CI)")
    axes[-1].legend(title="scored model", fontsize=8)
    fig.suptitle(f"{metric_label(metric)} ({region}) vs budget, white-box")
    return fig


def budget_plot(table: pd.DataFrame, path: str | Path, *, region: str = "WT", metric: str = "dice") -> Path:
    """Write :func:`budget_figure` of ``table`` to ``path`` (a .png)."""
    out = check_png_path(path, "budget_plot")
    return save_png(budget_figure(table, region=region, metric=metric), out)
