"""The files beside a report page: every figure as PNG and every table as CSV, under unique names in one folder.

The folder is built under a temporary name and swapped in when the page is written (:meth:`Assets.commit`), so a
failed report leaves an earlier report and its files as they were.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from volrob.io import atomic_write_text
from volrob.report.page import FigureBlock, TableBlock

Format = str | Callable[[Any], str]


def slug(text: str) -> str:
    """A file-name stem from ``text``: letters, digits, ``.``, ``_`` and ``-`` only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "item"


def fmt(value: Any, spec: Format = ".3f") -> str:
    """One cell for the page: ``spec`` applied to numbers, a dash for missing values, text as is."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if callable(spec):
        return spec(value)
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return format(value, spec if isinstance(value, (float, np.floating)) else "d")
    return str(value)


def fmt_p(value: Any) -> str:
    """A p-value: three significant digits, ``< 0.001`` below that."""
    if value is None or not np.isfinite(float(value)):
        return "–"
    return "< 0.001" if float(value) < 0.001 else f"{float(value):.3g}"


COUNTS = frozenset({"n", "n_paired", "cases", "epochs", "best_epoch", "failed", "units of work", "attack settings",
                    "queries", "selected_queries", "sample", "seed", "epoch"})
"""Columns that count things: shown as integers even when a missing value made pandas store them as floats."""


def ci_column(frame: pd.DataFrame, mean: str, low: str, high: str, *, signed: bool = False) -> list[str]:
    """``mean [low, high]`` per row, three decimals (with a sign for differences), a dash where the mean is missing."""
    sign = "+" if signed else ""
    return ["–" if m != m else f"{m:{sign}.3f} [{lo:{sign}.3f}, {hi:{sign}.3f}]"
            for m, lo, hi in zip(frame[mean], frame[low], frame[high], strict=True)]


def display(frame: pd.DataFrame, formats: Mapping[str, Format] | None = None, *,
            names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``frame`` as strings: each column through its format (default three decimals for floats, integers for
    :data:`COUNTS`), renamed."""
    formats = {**{c: ".0f" for c in frame.columns if c in COUNTS}, **(formats or {})}
    out = pd.DataFrame({c: [fmt(v, formats.get(c, ".3f")) for v in frame[c]] for c in frame.columns})
    return out.rename(columns=dict(names or {}))


class Assets:
    """Writes a report's PNG and CSV files into ``folder`` (built under a temporary name until committed)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.staging = self.folder.with_name(f".{self.folder.name}.partial")
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        self._taken: set[str] = set()

    def _name(self, stem: str, suffix: str) -> str:
        base, i = slug(stem), 1
        name = f"{base}{suffix}"
        while name in self._taken:
            i += 1
            name = f"{base}-{i}{suffix}"
        self._taken.add(name)
        return name

    def final(self, staged: Path) -> Path:
        """Where a staged file will be once committed."""
        return self.folder / staged.relative_to(self.staging)

    def figure(self, stem: str, draw: Callable[[Path], Any], title: str, caption: str = "") -> FigureBlock:
        """Draw a PNG with ``draw(path)`` and describe it."""
        path = self.staging / self._name(stem, ".png")
        draw(path)
        return FigureBlock(path, title, caption)

    def copy_figure(self, source: Path, stem: str, title: str, caption: str = "") -> FigureBlock:
        """A PNG the run already holds, copied beside the page."""
        path = self.staging / self._name(stem, ".png")
        shutil.copyfile(source, path)
        return FigureBlock(path, title, caption)

    def table(self, stem: str, raw: pd.DataFrame, title: str, caption: str = "", *,
              shown: pd.DataFrame | None = None) -> TableBlock:
        """Write ``raw`` as CSV; the page shows ``shown`` (default: ``raw`` formatted by :func:`display`)."""
        path = self.staging / self._name(stem, ".csv")
        atomic_write_text(path, raw.to_csv(index=False))
        return TableBlock(display(raw) if shown is None else shown, path, title, caption)

    def commit(self) -> None:
        """Replace the files of an earlier report with these."""
        old = self.folder.with_name(f".{self.folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if self.folder.exists():
            self.folder.rename(old)
        self.staging.rename(self.folder)
        shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
