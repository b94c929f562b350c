"""Figures comparing perturbations by frequency: radial DCT spectra (log scale) and the Dice drop per band.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg canvas, no display, no global pyplot state)
and saved atomically: a failure while saving leaves an existing file untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from volrob.errors import ConfigError
from volrob.report.checks import as_bool, check_columns
from volrob.report.figure import check_png_path, new_figure, save_png
from volrob.report.labels import cases_text

SPECTRUM_COLUMNS: tuple[str, ...] = ("name", "bin_lo", "bin_hi", "energy_fraction")
BAND_COLUMNS: tuple[str, ...] = ("name", "band", "value")


def _check_table(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    check_columns(table, columns, what)
    if table.empty:
        raise ConfigError(f"{what}: table has no rows")


def spectrum_figure(table: pd.DataFrame, *, title: str = "DCT energy spectrum of the perturbations",
                    n: int | Sequence[int] | None = None) -> Figure:
    """One line per ``name``: mean energy fraction over samples against the bin centre, log-scale y; ``n`` (cases)
    is appended to ``title`` when given.

    ``table`` has the columns of :func:`volrob.analysis.spectrum.spectrum_table` (``sample`` optional).
    Non-positive values have no place on a log axis and are left out of their line.
    """
    _check_table(table, SPECTRUM_COLUMNS, "spectrum_plot")
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
    ax.set_title(title if n is None else f"{title}, {cases_text(n)}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="perturbation")
    return fig


def spectrum_plot(table: pd.DataFrame, path: str | Path, *,
                  title: str = "DCT energy spectrum of the perturbations", n: int | Sequence[int] | None = None
                  ) -> Path:
    """Write :func:`spectrum_figure` to ``path`` (a .png)."""
    target = check_png_path(path, "spectrum_plot")
    return save_png(spectrum_figure(table, title=title, n=n), target)


def band_title(region: str, attack: str | None = None, budget: str | None = None, source: str | None = None,
               n: int | Sequence[int] | None = None) -> str:
    """``WT Dice drop per frequency band:`` and on a second line ``pgd, eps=8, crafted on unet, n = 4 cases``
    (parts not given left out)."""
    parts = [str(attack) if attack is not None else None, budget,
             f"crafted on {source}" if source is not None else None, cases_text(n) if n is not None else None]
    shown = ", ".join(p for p in parts if p)
    return f"{region} Dice drop per frequency band" + (f":\n{shown}" if shown else "")


def band_bar_figure(table: pd.DataFrame, *, region: str = "WT", attack: str | None = None,
                    budget: str | None = None, source: str | None = None, n: int | Sequence[int] | None = None,
                    ylabel: str | None = None, title: str | None = None) -> Figure:
    """Grouped bars: one group per ``band`` (in order of first appearance), one bar per scored model ``name``, the
    white-box model (``white_box`` column if present, else ``name == source``) marked ``(white-box)``.

    Repeated ``(name, band)`` rows (e.g. one per case) are averaged; a missing pair leaves its bar out. The title is
    :func:`band_title` unless ``title`` is given.
    """
    what = "band_bar_plot"
    _check_table(table, BAND_COLUMNS, what)
    values = pd.to_numeric(table["value"], errors="coerce")
    if values.isna().any():
        raise ConfigError(f"{what}: column 'value' must hold numbers only")
    white = as_bool(table, "white_box", what) if "white_box" in table.columns else table["name"] == source
    white_names = set(table.loc[white.to_numpy(dtype=bool), "name"])
    bands = list(pd.unique(table["band"]))
    names = list(pd.unique(table["name"]))
    means = table.assign(value=values).groupby(["name", "band"], sort=False)["value"].mean()
    fig = new_figure((max(6.0, 1.2 * len(bands) * max(1, len(names)) / 2 + 2.0), 4.5))
    ax = fig.add_subplot()
    width = 0.8 / len(names)
    x = np.arange(len(bands), dtype=float)
    for j, name in enumerate(names):
        heights = np.array([means.get((name, band), np.nan) for band in bands], dtype=float)
        label = f"{name} (white-box)" if name in white_names else str(name)
        ax.bar(x - 0.4 + width * (j + 0.5), heights, width, label=label, hatch="//" if name in white_names else None)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, [str(b) for b in bands], rotation=30 if len(bands) > 6 else 0)
    ax.set_xlabel("DCT frequency band (normalised radius)")
    ax.set_ylabel(ylabel or f"mean {region} Dice drop\n(clean − band-filtered input)")
    ax.set_title(title or band_title(region, attack, budget, source, n))
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(title="scored model")
    return fig


def band_bar_plot(table: pd.DataFrame, path: str | Path, *, ylabel: str | None = None, title: str | None = None,
                  region: str = "WT", attack: str | None = None, budget: str | None = None,
                  source: str | None = None, n: int | Sequence[int] | None = None) -> Path:
    """Write :func:`band_bar_figure` to ``path`` (a .png)."""
    target = check_png_path(path, "band_bar_plot")
    return save_png(band_bar_figure(table, region=region, attack=attack, budget=budget, source=source, n=n,
                                    ylabel=ylabel, title=title), target)
