"""What every section builder gets: the results, the asset writer and small shared wording."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from volrob.report.assets import Assets
from volrob.report.results_dir import ResultsDir

SYNTHETIC_NOTE = ("Synthetic phantoms: these numbers describe models trained and tested on volrob's synthetic "
                  "BraTS-like volumes, for demonstration and testing. They are not a statement about real glioma "
                  "segmenters, which these models would segment poorly.")


@dataclass
class Context:
    """The results being reported and where their files go."""

    results: ResultsDir
    assets: Assets

    @property
    def seed(self) -> int:
        return self.results.seed

    def tag(self) -> str:
        """A prefix for figure titles: ``[synthetic] `` when the data are phantoms, else empty."""
        return "[synthetic data] " if self.results.synthetic else ""


def options_text(params: Any, *, skip: Any = None) -> str:
    """An attack's options as ``k=v, ...`` from a JSON string or a mapping, without the ``skip`` key (the budget,
    shown on its own); ``–`` when none is left."""
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            return params
    if not isinstance(params, dict):
        return "–"
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if k != skip) or "–"


def seconds_text(seconds: float | None) -> str:
    """``1 h 02 min``, ``12 min 05 s`` or ``8.2 s``."""
    if seconds is None:
        return "–"
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{seconds:.1f} s"
