"""Per-case clean against adversarial score of one scored model under white-box attack: one marker colour per attack
setting and the line y = x ("no change"), so a reader sees which cases an attack hurt and by how much."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from volrob.errors import ConfigError
from volrob.report.checks import as_bool, check_columns, finite
from volrob.report.figure import check_png_path, new_figure, save_png
from volrob.report.labels import UNIT_METRICS, cases_text, metric_label, setting_text

SCATTER_COLUMNS: tuple[str, ...] = ("model", "case", "white_box", "attack", "budget_key", "budget", "region",
                                    "metric", "clean", "adversarial")


def scatter_rows(results: pd.DataFrame, *, model: str, region: str = "WT", metric: str = "dice") -> pd.DataFrame:
    """The white-box ``results.csv`` rows that :func:`scatter_figure` draws, with a ``setting`` column
    (``pgd eps=8``) and numeric ``clean`` / ``adversarial``, in their original order."""
    what = "scatter_figure"
    check_columns(results, SCATTER_COLUMNS, what, "results")
    white = results[as_bool(results, "white_box", what)]
    mine = white[white["model"] == model]
    if mine.empty:
        models = sorted(map(str, pd.unique(white["model"])))
        raise ConfigError(f"{what}: model {model!r} has no white-box rows (white-box models: {models})")
    sel = mine[(mine["region"] == region) & (mine["metric"] == metric)]
    if sel.empty:
        raise ConfigError(f"{what}: model {model!r} has no rows with region {region!r} and metric {metric!r}")
    settings = [setting_text(a, k, b) for a, k, b in zip(sel["attack"], sel["budget_key"], sel["budget"],
                                                           strict=True)]
    return sel.assign(clean=finite(sel, "clean", what), adversarial=finite(sel, "adversarial", what),
                      setting=settings)


def scatter_figure(results: pd.DataFrame, *, model: str, region: str = "WT", metric: str = "dice") -> Figure:
    """Clean (x) against adversarial (y) ``metric`` of ``region`` per case and attack setting for ``model``
    (white-box rows of ``results.csv``); both axes 0..1 for Dice, NSD and lesion Dice."""
    rows = scatter_rows(results, model=model, region=region, metric=metric)
    settings = list(pd.unique(rows["setting"]))
    colours = colormaps["tab10" if len(settings) <= 10 else "tab20"]
    fig = new_figure((6.5, 5.5))
    ax = fig.add_subplot()
    for i, setting in enumerate(settings):
        s = rows[rows["setting"] == setting]
        ax.scatter(s["clean"].to_numpy(), s["adversarial"].to_numpy(), s=28, alpha=0.8,
                   color=colours(i % colours.N), label=setting, zorder=3)
    if metric in UNIT_METRICS:
        top = 1.0
    else:
        top = float(np.nanmax(rows[["clean", "adversarial"]].to_numpy(), initial=0.0)) * 1.05 or 1.0
    ax.plot([0.0, top], [0.0, top], linestyle="--", color="grey", linewidth=1, label="no change (y = x)", zorder=1)
    ax.text(0.97 * top, 0.92 * top, "no change", rotation=45, ha="right", va="top", color="grey", fontsize=9,
            rotation_mode="anchor")
    ax.set_xlim(0.0, top)
    ax.set_ylim(0.0, top)
    ax.set_aspect("equal")
    label = metric_label(metric)
    ax.set_xlabel(f"clean {label}, {region}")
    ax.set_ylabel(f"adversarial {label}, {region}")
    ax.grid(True, alpha=0.3)
    ax.legend(title="attack setting", fontsize=8, loc="upper left")
    ax.set_title(f"{model}: per-case {label} ({region}), clean vs adversarial\nwhite-box, "
                 f"{cases_text(rows['case'].nunique())}")
    return fig


def scatter_plot(results: pd.DataFrame, path: str | Path, *, model: str, region: str = "WT",
                 metric: str = "dice") -> Path:
    """Write :func:`scatter_figure` to ``path`` (a .png)."""
    out = check_png_path(path, "scatter_plot")
    return save_png(scatter_figure(results, model=model, region=region, metric=metric), out)
