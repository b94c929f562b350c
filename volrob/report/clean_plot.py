"""Clean scores per model and region: the mean with its bootstrap 95 % interval, one bar per model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from volrob.data.labels import REGIONS
from volrob.errors import DataError
from volrob.report.checks import check_columns
from volrob.report.figure import check_png_path, new_figure, save_png

CLEAN_COLUMNS = ("model", "region", "metric", "n", "mean", "ci_low", "ci_high")
BOUNDED = ("dice", "nsd", "lesion_dice")


def clean_figure(summary: pd.DataFrame, *, metric: str = "dice", title: str = "") -> Figure:
    """Grouped bars of ``metric``: one group per region, one bar per model, with the CI as error bars.
    ``summary`` has the columns of an evaluation's ``summary.csv`` (at least :data:`CLEAN_COLUMNS`)."""
    check_columns(summary, CLEAN_COLUMNS, "clean_figure", "summary")
    rows = summary[summary["metric"] == metric]
    if rows.empty:
        raise DataError(f"clean_figure: no rows of metric {metric!r}")
    found = list(pd.unique(rows["region"]))
    regions = [r for r in REGIONS if r in found] + [r for r in found if r not in REGIONS]
    models = list(pd.unique(rows["model"]))
    colours = colormaps["tab10"]
    fig = new_figure((max(6.0, 1.4 * len(regions) * max(1, len(models)) / 2 + 3.0), 4.2))
    ax = fig.add_subplot()
    width = 0.8 / len(models)
    x = np.arange(len(regions), dtype=float)
    for i, model in enumerate(models):
        mine = rows[rows["model"] == model].set_index("region").reindex(regions)
        mean = mine["mean"].to_numpy(float)
        err = np.vstack([np.clip(mean - mine["ci_low"].to_numpy(float), 0, None),
                         np.clip(mine["ci_high"].to_numpy(float) - mean, 0, None)])
        ax.bar(x - 0.4 + width * (i + 0.5), mean, width, yerr=err, capsize=3, color=colours(i % 10), label=model)
    ax.set_xticks(x, regions)
    ax.set_ylabel(f"mean {metric} (95 % bootstrap CI)")
    if metric in BOUNDED:
        ax.set_ylim(0, 1)
    else:
        ax.set_ylim(bottom=0)
    n = sorted({int(v) for v in rows["n"]})
    ax.set_title(title or f"clean {metric} per region, n = {', '.join(map(str, n))} cases")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(title="model", fontsize=8)
    return fig


def clean_plot(summary: pd.DataFrame, path: str | Path, *, metric: str = "dice", title: str = "") -> Path:
    """Write :func:`clean_figure` to ``path`` (a .png)."""
    target = check_png_path(path, "clean_plot")
    return save_png(clean_figure(summary, metric=metric, title=title), target)
