"""Defence comparison plot for one region, clean first, then every attack setting, one bar per model in each group:
above, each model's mean Dice with its 95 % CI; below, its paired difference from the reference (model minus
reference on the same cases) with the bootstrap 95 % CI, where margins of a few hundredths are visible. The titles give
the number of cases (``n`` and ``n_paired``); with one case there is no interval, and the figure says so."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from volrob.errors import ConfigError
from volrob.evaluation.compare import setting_label
from volrob.report.checks import check_columns
from volrob.report.figure import check_png_path, new_figure, save_png
from volrob.report.labels import cases_text


@dataclass(frozen=True)
class Series:
    """One model's bars: ``(mean, low, high)`` per group (clean, then each setting); NaN where it has none."""

    model: str
    defence: str
    dice: tuple[np.ndarray, np.ndarray, np.ndarray]
    diff: tuple[np.ndarray, np.ndarray, np.ndarray]


DICE = (("clean_dice", "clean_ci_low", "clean_ci_high"),
        ("adversarial_dice", "adversarial_ci_low", "adversarial_ci_high"))
DIFF = (("diff_clean", "diff_clean_ci_low", "diff_clean_ci_high"),
        ("diff_adversarial", "diff_adversarial_ci_low", "diff_adversarial_ci_high"))


def _triple(mine: pd.DataFrame, settings: list[str], columns: tuple[tuple[str, ...], tuple[str, ...]]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, low, high)`` arrays: the clean columns from the model's first row, then the adversarial ones per
    setting (NaN where the model has no such setting)."""
    first = mine.iloc[0]
    clean, adversarial = columns
    out = [np.asarray([first[c]] + [mine.loc[s, a] if s in mine.index else np.nan for s in settings], dtype=float)
           for c, a in zip(clean, adversarial, strict=True)]
    return out[0], out[1], out[2]


NEED = ("model", "defence", "reference", "setting", "attack", "budget_key", "budget", "region", "n", "n_paired",
        *(c for group in (*DICE, *DIFF) for c in group))


def comparison_series(table: pd.DataFrame, region: str = "WT") -> tuple[list[str], list[Series]]:
    """Group labels and per-model bars of :func:`~volrob.evaluation.compare.compare_models` rows of ``region``."""
    check_columns(table, NEED, "comparison plot")
    rows = table[table["region"] == region]
    if rows.empty:
        raise ConfigError(f"region: no comparison rows for {region!r}")
    settings = list(pd.unique(rows["setting"]))
    labels = ["clean"] + [setting_label(rows[rows["setting"] == s].iloc[0].to_dict()) for s in settings]
    series = []
    for model in pd.unique(rows["model"]):
        mine = rows[rows["model"] == model].set_index("setting")
        series.append(Series(str(model), str(mine.iloc[0]["defence"]),
                             _triple(mine, settings, DICE), _triple(mine, settings, DIFF)))
    return labels, series


def _bars(ax: Axes, x: np.ndarray, width: float, offset: float, values: tuple[np.ndarray, ...], **kwargs: Any) -> None:
    mean, low, high = values
    err = np.vstack([np.clip(mean - low, 0, None), np.clip(high - mean, 0, None)])
    ax.bar(x + offset, mean, width, yerr=err, capsize=2, **kwargs)


def _counts(rows: pd.DataFrame, column: str) -> list[int]:
    values = pd.to_numeric(rows[column], errors="coerce").dropna()
    return [int(v) for v in values]


def comparison_figure(table: pd.DataFrame, *, region: str = "WT") -> Figure:
    """The two-panel chart of :func:`comparison_series`: mean Dice with 95 % CIs (y 0..1) above, the paired
    difference from the reference below; titles with the numbers of cases, a note when one is 1."""
    labels, series = comparison_series(table, region)
    rows = table[table["region"] == region]
    reference = str(rows["reference"].iloc[0])
    n_cases, n_paired = _counts(rows, "n"), _counts(rows, "n_paired")
    n = len(series)
    colours = colormaps["tab10" if n <= 10 else "tab20"]
    fig = new_figure((min(16.0, max(7.0, 0.16 * n * len(labels) + 4.0)), 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    width = 0.8 / n
    x = np.arange(len(labels))
    for i, s in enumerate(series):
        offset = (i - (n - 1) / 2) * width
        _bars(top, x, width, offset, s.dice, color=colours(i % colours.N), label=f"{s.model} ({s.defence})")
        _bars(bottom, x, width, offset, s.diff, color=colours(i % colours.N))
    top.set_ylabel(f"mean {region} Dice (95 % CI)")
    top.set_ylim(0, 1.0)
    top.set_title(f"{region} Dice per model: clean and under attack, {cases_text(n_cases)}")
    top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    bottom.axhline(0.0, color="black", linewidth=0.8)
    bottom.set_ylabel(f"{region} Dice − {reference}\n(paired, 95 % CI)")
    paired = f", paired on {cases_text(n_paired)}" if n_paired else ""
    bottom.set_title(f"difference from the reference {reference}{paired}", fontsize=10)
    bottom.set_xticks(x, labels, rotation=15, ha="right")
    if 1 in n_cases or 1 in n_paired:
        fig.suptitle("n = 1: no confidence interval", fontsize=10, color="darkred")
    return fig


def plot_comparison(table: pd.DataFrame, path: str | Path, *, region: str = "WT") -> Path:
    """Write :func:`comparison_figure` to ``path`` (a .png)."""
    out = check_png_path(path, "comparison plot")
    return save_png(comparison_figure(table, region=region), out)
