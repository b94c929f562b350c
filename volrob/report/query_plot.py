"""Dice vs queries figure for a query-based attack: mean metric over cases against the query budget (log x).

Query count 0 is the clean input; a log axis has no place for it, so each model's clean mean is drawn as a
dashed horizontal reference line in the colour of its curve. Dice and NSD axes span 0..1 and HD95 starts at 0, so
a change of a few thousandths looks like one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from volrob.errors import ConfigError
from volrob.report.figure import check_png_path, new_figure, save_png
from volrob.report.labels import METRIC_LABELS, cases_text, metric_label, metric_limits

QUERY_PLOT_COLUMNS: tuple[str, ...] = ("model", "case", "queries", "region", "metric", "adversarial")
__all__ = ["METRIC_LABELS", "QUERY_PLOT_COLUMNS", "query_figure", "query_plot"]


def _selection(table: pd.DataFrame, region: str, metric: str) -> pd.DataFrame:
    """The rows of ``region`` and ``metric`` with numeric, non-negative integer query counts and numeric values."""
    what = "query_plot"
    if not isinstance(table, pd.DataFrame):
        raise ConfigError(f"{what}: table must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in QUERY_PLOT_COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(f"{what}: table lacks column(s) {missing}")
    sel = table[(table["region"] == region) & (table["metric"] == metric)]
    if sel.empty:
        raise ConfigError(f"{what}: no rows with region {region!r} and metric {metric!r}")
    queries = pd.to_numeric(sel["queries"], errors="coerce")
    if queries.isna().any() or (queries < 0).any() or (queries != np.floor(queries)).any():
        raise ConfigError(f"{what}: column 'queries' must hold non-negative integers only")
    values = pd.to_numeric(sel["adversarial"], errors="coerce")
    if values.isna().any():
        raise ConfigError(f"{what}: column 'adversarial' must hold numbers only")
    return sel.assign(queries=queries.astype(int), adversarial=values)


def query_figure(table: pd.DataFrame, *, region: str = "WT", metric: str = "dice") -> Figure:
    """Mean ``metric`` of ``region`` over cases (the ``adversarial`` column: the most damaging input found so far)
    against the number of queries (log x), one line per ``model``; queries 0 (clean) is drawn as a dashed reference
    line. ``table`` has the columns of ``queries.csv``; the title names its ``attack`` (when the column is there),
    the models and the number of cases (per model; a range when they differ)."""
    sel = _selection(table, region, metric)
    fig = new_figure((7.0, 4.5))
    ax = fig.add_subplot()
    label = metric_label(metric)
    models = list(pd.unique(sel["model"]))
    for model in models:
        means = sel[sel["model"] == model].groupby("queries", sort=True)["adversarial"].mean()
        attacked = means[means.index > 0]
        line = ax.plot(attacked.index.to_numpy(), attacked.to_numpy(), marker="o", markersize=4,
                       label=f"{model}: attacked")[0] if not attacked.empty else None
        if 0 in means.index:
            colour = line.get_color() if line is not None else None
            ax.axhline(float(means.loc[0]), linestyle="--", color=colour, alpha=0.8, label=f"{model}: clean")
    ax.set_xscale("log")
    counts = sorted(int(q) for q in pd.unique(sel["queries"]) if q > 0)
    if counts:  # ticks at the counts that were scored, written as counts (25, 100), not powers of ten
        ax.set_xticks(counts, [str(q) for q in counts])
        ax.xaxis.set_minor_formatter(NullFormatter())
    if int(sel["queries"].max()) == 0:  # clean rows only: give the log axis a range
        ax.set_xlim(1, 10)
    metric_limits(ax, metric, sel["adversarial"].to_numpy(dtype=float))
    ax.set_xlabel("queries to the model (log scale)")
    ax.set_ylabel(f"mean {label}, {region}")
    attacks = [str(a) for a in pd.unique(sel["attack"])] if "attack" in sel.columns else []
    by = f": {', '.join(attacks)}" if attacks else " of the black-box attack"
    ax.set_title(f"{label} ({region}) vs queries{by}\non {', '.join(map(str, models))}, "
                 f"{cases_text(sel.groupby('model', sort=False)['case'].nunique())}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig


def query_plot(table: pd.DataFrame, path: str | Path, *, region: str = "WT", metric: str = "dice") -> Path:
    """Write :func:`query_figure` to ``path`` (a .png)."""
    target = check_png_path(path, "query_plot")
    return save_png(query_figure(table, region=region, metric=metric), target)
