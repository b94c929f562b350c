"""Transfer heatmaps: sources × targets panels of mean Dice drop and attack success rate, values written in."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from volrob.errors import ConfigError
from volrob.report.figure import check_png_path, new_figure, save_png


def _panel(ax: Axes, frame: pd.DataFrame, title: str, label: str, vmin: float, vmax: float, cmap: str,
           fmt: str, dark_high: bool) -> None:
    values = frame.to_numpy(dtype=float)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(frame.shape[1]), [str(c) for c in frame.columns], rotation=30, ha="right")
    ax.set_yticks(range(frame.shape[0]), [str(i) for i in frame.index])
    ax.set_xlabel("target (evaluated)")
    ax.set_ylabel("source (crafted on)")
    ax.set_title(title)
    mid = (vmin + vmax) / 2
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            text = "–" if not np.isfinite(v) else format(v, fmt)
            bold = frame.index[i] == frame.columns[j]
            ax.text(j, i, text, ha="center", va="center", fontsize=9, fontweight="bold" if bold else "normal",
                    color="white" if np.isfinite(v) and (v > mid) == dark_high else "black")
    ax.figure.colorbar(image, ax=ax, label=label, shrink=0.85)


def transfer_heatmap(panels: Sequence[tuple[pd.DataFrame, str, str]], path: str | Path, *, title: str) -> Path:
    """Save one PNG with a heatmap per ``(frame, panel title, colour-bar label)``; frames are sources × targets.

    Dice drops use a 0..max(0.05, largest) scale, rates 0..1; the diagonal (white-box) values are bold.
    """
    out = check_png_path(path, "transfer_heatmap")
    if not panels:
        raise ConfigError("transfer_heatmap: no panels to draw")
    width = max(4.5, 1.0 + 0.9 * max(f.shape[1] for f, _, _ in panels))
    fig = new_figure((width * len(panels), max(3.5, 1.5 + 0.6 * max(f.shape[0] for f, _, _ in panels))))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (frame, name, label) in zip(axes, panels, strict=True):
        if frame.empty:
            raise ConfigError(f"transfer_heatmap: panel {name!r} has no values")
        is_rate = "rate" in label.lower()
        top = 1.0 if is_rate else max(0.05, float(np.nanmax(frame.to_numpy(dtype=float), initial=0.0)))
        _panel(ax, frame, name, label, 0.0, top, "viridis" if is_rate else "magma_r", ".0%" if is_rate else ".3f",
               dark_high=not is_rate)
    fig.suptitle(title)
    return save_png(fig, out)
