"""Defence comparison plot: one region's mean Dice with 95 % CI error bars, clean first, then every attack setting;
one bar per model in each group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from volrob.errors import ConfigError
from volrob.report.figure import check_png_path, new_figure, save_png
from volrob.robustness.compare import setting_label


def plot_comparison(table: pd.DataFrame, path: str | Path, *, region: str = "WT") -> Path:
    """Write the bar chart of :func:`~volrob.robustness.compare.compare_models` rows of ``region`` to ``path``."""
    out = check_png_path(path, "comparison plot")
    rows = table[table["region"] == region]
    if rows.empty:
        raise ConfigError(f"region: no comparison rows for {region!r}")
    models = list(pd.unique(rows["model_label"]))
    settings = list(pd.unique(rows["setting"]))
    labels = ["clean"] + [setting_label(rows[rows["setting"] == s].iloc[0].to_dict()) for s in settings]
    fig = new_figure((max(6.0, 1.1 * len(labels) * max(1, len(models)) * 0.45 + 2), 4.0))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(models)
    x = np.arange(len(labels))
    for i, model in enumerate(models):
        mine = rows[rows["model_label"] == model].set_index("setting")
        first = mine.iloc[0]
        mean = [first["clean_dice"]] + [mine.loc[s, "adversarial_dice"] if s in mine.index else np.nan
                                        for s in settings]
        low = [first["clean_ci_low"]] + [mine.loc[s, "adversarial_ci_low"] if s in mine.index else np.nan
                                         for s in settings]
        high = [first["clean_ci_high"]] + [mine.loc[s, "adversarial_ci_high"] if s in mine.index else np.nan
                                           for s in settings]
        mean_a, low_a, high_a = (np.asarray(v, dtype=float) for v in (mean, low, high))
        err = np.vstack([np.clip(mean_a - low_a, 0, None), np.clip(high_a - mean_a, 0, None)])
        ax.bar(x + (i - (len(models) - 1) / 2) * width, mean_a, width, yerr=err, capsize=3,
               label=f"{model} ({first['defence']})")
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel(f"mean {region} Dice (95 % CI)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title(f"{region} Dice per model: clean and under attack")
    return save_png(fig, out)
