"""Training curves of the models a study trained: training loss and mean validation Dice against the epoch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from volrob.errors import ConfigError
from volrob.report.checks import check_columns
from volrob.report.figure import check_png_path, new_figure, save_png

LOG_COLUMNS = ("epoch", "train_loss", "val_dice_mean")


def training_figure(logs: Mapping[str, pd.DataFrame], *, title: str = "Training") -> Figure:
    """Two panels, one line per model: the epoch's mean training loss, and the mean validation Dice (over TC, WT
    and ET) at the epochs it was measured (0..1 axis). ``logs`` maps a model to its ``log.csv`` frame."""
    if not logs:
        raise ConfigError("training_figure: no training logs")
    for name, log in logs.items():
        check_columns(log, LOG_COLUMNS, "training_figure", f"the log of {name!r}")
    fig = new_figure((11.0, 4.0))
    loss_ax, dice_ax = fig.subplots(1, 2)
    for name, log in logs.items():
        line = loss_ax.plot(log["epoch"], log["train_loss"], marker=".", label=name)[0]
        val = log[np.isfinite(pd.to_numeric(log["val_dice_mean"], errors="coerce"))]
        dice_ax.plot(val["epoch"], val["val_dice_mean"], marker="o", markersize=4, color=line.get_color(),
                     label=name)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss (mean over the epoch)")
    loss_ax.set_ylim(bottom=0)
    loss_ax.set_title("training loss")
    dice_ax.set_xlabel("epoch")
    dice_ax.set_ylabel("mean validation Dice (TC, WT, ET)")
    dice_ax.set_ylim(0, 1)
    dice_ax.set_title("validation Dice")
    for ax in (loss_ax, dice_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def training_plot(logs: Mapping[str, pd.DataFrame], path: str | Path, *, title: str = "Training") -> Path:
    """Write :func:`training_figure` to ``path`` (a .png)."""
    target = check_png_path(path, "training_plot")
    return save_png(training_figure(logs, title=title), target)
