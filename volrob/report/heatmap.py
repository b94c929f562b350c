"""Transfer heatmaps of one attack and budget: sources × targets panels of mean Dice drop and attack success rate,
values written in, the white-box diagonal bold, each target's clean Dice under its name.

The drop panel uses a diverging scale centred on 0 (symmetric limits, at least ±0.05): a perturbation that
*improves* a target is a negative, blue cell, never clipped to 0. A target whose clean Dice is below
:data:`LOW_CLEAN` is hatched in the success panel and flagged under its name: a "success" there is a drop from
almost nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from volrob.errors import ConfigError, DataError
from volrob.evaluation.transfer_matrix import MATRIX_COLUMNS, pivot
from volrob.report.checks import check_columns
from volrob.report.figure import check_png_path, new_figure, save_png
from volrob.report.labels import budget_text, cases_text

LOW_CLEAN = 0.1
"""Clean Dice below which a target's drop and success rate mean little (flagged in the figure)."""
MIN_DROP_LIMIT = 0.05
"""The drop scale spans at least ±this, so tiny drops are not painted as extremes."""


def _names(value: object, what: str, name: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"{what}: {name} must be a non-empty list of model names, got {value!r}")
    return [str(v) for v in value]


def _checked(g: pd.DataFrame, sources: Sequence[str], targets: Sequence[str], region: str,
             success_drop: float) -> pd.DataFrame:
    """``g`` with numeric value columns, after checking it is one attack setting of ``region``."""
    what = "transfer_figure"
    check_columns(g, MATRIX_COLUMNS, what, "matrices_group")
    if g.empty:
        raise DataError(f"{what}: matrices_group has no rows")
    settings = g.drop_duplicates(["attack", "budget_key", "budget"])
    if len(settings) > 1:
        raise ConfigError(f"{what}: matrices_group holds {len(settings)} attack settings; pass the rows of one "
                          "(attack, budget)")
    if not (g["region"] == region).all():
        raise ConfigError(f"{what}: region {region!r} does not match the rows' region(s) "
                          f"{sorted(map(str, pd.unique(g['region'])))}")
    if isinstance(success_drop, bool) or not isinstance(success_drop, int | float) or not 0 < success_drop <= 1:
        raise ConfigError(f"{what}: success_drop must be a number in (0, 1], got {success_drop!r}")
    for name, wanted, column in (("sources", sources, "source"), ("targets", targets, "model")):
        if not set(wanted) & set(map(str, g[column])):
            raise ConfigError(f"{what}: none of the {name} {list(wanted)} has rows in matrices_group "
                              f"(column {column!r} has {sorted(map(str, pd.unique(g[column])))})")
    if g.duplicated(["source", "model"]).any():
        raise DataError(f"{what}: matrices_group has several rows for one (source, model) pair")
    out = g.assign(source=g["source"].astype(str), model=g["model"].astype(str))
    for c in ("n", "clean_dice", "dice_drop", "success_rate"):
        values = pd.to_numeric(g[c], errors="coerce")
        if (values.isna() & g[c].notna()).any():
            raise DataError(f"{what}: column {c!r} must hold numbers only")
        out[c] = values.astype(float)
    return out


def target_clean(g: pd.DataFrame, targets: Sequence[str]) -> pd.Series:
    """Each target's clean Dice, the mean over its cases (rows of several sources weighted by their ``n``)."""
    weights = g["n"].astype(float)
    total = (g["clean_dice"].astype(float) * weights).groupby(g["model"].astype(str)).sum()
    return (total / weights.groupby(g["model"].astype(str)).sum()).reindex(list(targets))


def _tick_labels(clean: pd.Series) -> list[str]:
    out = []
    for target, c in clean.items():
        text = f"{target}\nclean {c:.3f}" if np.isfinite(c) else f"{target}\nclean –"
        out.append(text + (f"\n(clean<{LOW_CLEAN:g})" if np.isfinite(c) and c < LOW_CLEAN else ""))
    return out


def _panel(ax: Axes, frame: pd.DataFrame, ticks: list[str], *, cmap: str, vmin: float, vmax: float, fmt: str,
           dark: float, label: str, title: str) -> None:
    """One heatmap with its values written in (white where ``|value| > dark`` on the drop scale, or below ``dark``
    on the rate scale, see callers), the diagonal bold."""
    values = frame.to_numpy(dtype=float)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(frame.shape[1]), ticks, fontsize=8)
    ax.set_yticks(range(frame.shape[0]), [str(i) for i in frame.index])
    ax.set_xlabel("target (scored)")
    ax.set_ylabel("source (crafted on)")
    ax.set_title(title, fontsize=10)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            light = np.isfinite(v) and (abs(v) > dark if vmin < 0 else v < dark)
            ax.text(j, i, "–" if not np.isfinite(v) else format(v, fmt), ha="center", va="center", fontsize=9,
                    fontweight="bold" if frame.index[i] == frame.columns[j] else "normal",
                    color="white" if light else "black")
    ax.figure.colorbar(image, ax=ax, label=label, shrink=0.85)


def transfer_figure(matrices_group: pd.DataFrame, *, sources: Sequence[str], targets: Sequence[str], region: str,
                    success_drop: float) -> Figure:
    """Both panels for the ``matrices.csv`` rows of one (attack, budget) (:data:`MATRIX_COLUMNS`), rows and
    columns in the order of ``sources`` and ``targets``."""
    what = "transfer_figure"
    sources, targets = _names(sources, what, "sources"), _names(targets, what, "targets")
    g = _checked(matrices_group, sources, targets, region, success_drop)
    drop, rate = pivot(g, "dice_drop", sources, targets), pivot(g, "success_rate", sources, targets)
    clean = target_clean(g, targets)
    ticks = _tick_labels(clean)
    limit = max(MIN_DROP_LIMIT, float(np.nanmax(np.abs(drop.to_numpy(dtype=float)), initial=0.0)))
    width = max(4.5, 1.2 + 1.0 * len(targets))
    fig = new_figure((2 * width, max(4.0, 2.2 + 0.6 * len(sources))))
    left, right = fig.subplots(1, 2)
    _panel(left, drop, ticks, cmap="RdBu_r", vmin=-limit, vmax=limit, fmt=".3f", dark=0.6 * limit,
           label="Dice drop (clean − adversarial)",
           title=f"mean {region} Dice drop\n(< 0: the perturbation improved the target)")
    _panel(right, rate, ticks, cmap="viridis", vmin=0.0, vmax=1.0, fmt=".0%", dark=0.5, label="success rate",
           title=f"attack success rate: share of cases whose\n{region} Dice fell by ≥ {success_drop * 100:g} % "
                 "of its clean value")
    low = [j for j, c in enumerate(clean.to_numpy()) if np.isfinite(c) and c < LOW_CLEAN]
    for j in low:
        right.add_patch(Rectangle((j - 0.5, -0.5), 1.0, len(sources), fill=False, hatch="//", edgecolor="0.6",
                                  linewidth=0))
    if low:
        right.set_xlabel(f"target (scored)\nhatched: clean Dice < {LOW_CLEAN:g}, a drop from almost nothing")
    first = g.iloc[0]
    fig.suptitle(f"Transfer of {first['attack']}, {budget_text(first['budget_key'], first['budget'])}: {region} "
                 f"Dice, {cases_text(g['n'].astype(int))}\nrows crafted on, columns scored; bold diagonal = "
                 "white-box")
    return fig


def transfer_plot(matrices_group: pd.DataFrame, path: str | Path, *, sources: Sequence[str],
                  targets: Sequence[str], region: str, success_drop: float) -> Path:
    """Write :func:`transfer_figure` to ``path`` (a .png)."""
    out = check_png_path(path, "transfer_plot")
    return save_png(transfer_figure(matrices_group, sources=sources, targets=targets, region=region,
                                    success_drop=success_drop), out)
