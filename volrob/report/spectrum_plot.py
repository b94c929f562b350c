"""Figures comparing perturbations by frequency: radial DCT spectra (log scale) and a metric per band.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg canvas, no display, no global pyplot state)
and saved atomically: a failure while saving leaves an existing file untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from volrob.errors import ConfigError
from volrob.report.figure import check_png_path, new_figure, save_png

SPECTRUM_COLUMNS: tuple[str, ...] = ("name", "bin_lo", "bin_hi", "energy_fraction")
BAND_COLUMNS: tuple[str, ...] = ("name", "band", "value")


def _check_table(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(table, pd.DataFrame):
        raise ConfigError(f"{what}: table must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ConfigError(f"{what}: table lacks column(s) {missing}")
    if table.empty:
        raise ConfigError(f"{what}: table has no rows")


def spectrum_plot(table: pd.DataFrame, path: str | Path, *,
                  title: str = "DCT energy spectrum of the perturbations") -> Path:
    """One line per ``name``: mean energy fraction over samples against the bin centre, log-scale y.

    ``table`` has the columns of :func:`volrob.analysis.spectrum.spectrum_table` (``sample`` optional).
    Non-positive values have no place on a log axis and are left out of their line.
    """
    what = "spectrum_plot"
    _check_table(table, SPECTRUM_COLUMNS, what)
    target = check_png_path(path, what)
    fig = new_figure((7.0, 4.5))
    ax = fig.add_subplot()
    for name in pd.unique(table["name"]):
        rows = table[table["name"] == name]
        mean = rows.groupby(["bin_lo", "bin_hi"], sort=True)["energy_fraction"].mean()
        centres = np.array([(lo + hi) / 2 for lo, hi in mean.index])
        values = mean.to_numpy(dtype=float)
        keep = np.isfinite(values) & (values > 0)
        ax.plot(centres[keep], values[keep], marker="o", markersize=3, label=str(name))
    ax.set_yscale("log")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("normalised DCT frequency radius r (0 = constant, 1 = highest)")
    ax.set_ylabel("fraction of perturbation energy (log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="perturbation")
    return save_png(fig, target)


def band_bar_plot(table: pd.DataFrame, path: str | Path, *, ylabel: str = "Dice",
                  title: str = "Dice per frequency band") -> Path:
    """Grouped bars: one group per ``band`` (in order of first appearance), one bar per ``name``.

    Repeated ``(name, band)`` rows (e.g. one per case) are averaged; a missing pair leaves its bar out.
    """
    what = "band_bar_plot"
    _check_table(table, BAND_COLUMNS, what)
    target = check_png_path(path, what)
    values = pd.to_numeric(table["value"], errors="coerce")
    if values.isna().any():
        raise ConfigError(f"{what}: column 'value' must hold numbers only")
    bands = list(pd.unique(table["band"]))
    names = list(pd.unique(table["name"]))
    means = table.assign(value=values).groupby(["name", "band"], sort=False)["value"].mean()
    fig = new_figure((max(6.0, 1.2 * len(bands) * max(1, len(names)) / 2 + 2.0), 4.5))
    ax = fig.add_subplot()
    width = 0.8 / len(names)
    x = np.arange(len(bands), dtype=float)
    for j, name in enumerate(names):
        heights = np.array([means.get((name, band), np.nan) for band in bands], dtype=float)
        ax.bar(x - 0.4 + width * (j + 0.5), heights, width, label=str(name))
    ax.set_xticks(x, [str(b) for b in bands], rotation=30 if len(bands) > 6 else 0)
    ax.set_xlabel("DCT frequency band (normalised radius)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(title="perturbation")
    return save_png(fig, target)
