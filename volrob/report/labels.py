"""The words figures use: metric names, budget and attack-setting text, case counts, and where a metric's axis
starts and ends (the report's own copy of the engine's ``budget_text``, so report code need not import the engine).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from matplotlib.axes import Axes

UNIT_METRICS: frozenset[str] = frozenset({"dice", "nsd", "lesion_dice"})
"""Metrics that live on 0..1: their axes always span 0..1, never a zoomed range."""
METRIC_LABELS: dict[str, str] = {"dice": "Dice", "nsd": "NSD", "lesion_dice": "lesion Dice", "hd95": "HD95 (mm)",
                                 "hd95_brats": "HD95, BraTS (mm)", "lesion_hd95": "lesion HD95 (mm)"}


def metric_label(metric: str) -> str:
    """``Dice``, ``NSD``, ``HD95 (mm)``…; an unknown metric is shown as named."""
    return METRIC_LABELS.get(metric, str(metric))


def has_budget(key: Any) -> bool:
    """Whether ``key`` names a budget (a non-empty string; NaN and ``""`` mean the attack has none)."""
    return isinstance(key, str) and bool(key)


def budget_text(key: Any, value: Any) -> str:
    """``eps=8``, ``q_max=20`` or ``default budget`` (same text as :func:`volrob.engine.outputs.budget_text`)."""
    if not has_budget(key):
        return "default budget"
    return f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"


def setting_text(attack: Any, key: Any, value: Any) -> str:
    """One attack setting in a legend: ``pgd eps=8``, or the attack alone when it has no budget."""
    return f"{attack} {budget_text(key, value)}" if has_budget(key) else str(attack)


def budget_axis_label(key: Any) -> str:
    """``ε (1/255)`` for ``eps``, else the key's own name."""
    return "ε (1/255)" if key == "eps" else str(key)


def cases_text(n: int | Iterable[int]) -> str:
    """``n = 1 case``, ``n = 4 cases``, or ``n = 3–4 cases`` when groups differ."""
    values = sorted({int(v) for v in ([n] if isinstance(n, int | np.integer) else n)})
    if not values:
        return "n = 0 cases"
    lo, hi = values[0], values[-1]
    return f"n = {lo} case" if lo == hi == 1 else f"n = {lo} cases" if lo == hi else f"n = {lo}–{hi} cases"


def metric_limits(ax: Axes, metric: str, values: Iterable[float] = ()) -> None:
    """y from 0 to 1 for :data:`UNIT_METRICS`; otherwise from 0 to a little above the largest value."""
    if metric in UNIT_METRICS:
        ax.set_ylim(0.0, 1.0)
        return
    top = float(np.nanmax(np.asarray(list(values), dtype=float), initial=0.0))
    ax.set_ylim(0.0, top * 1.05 if top > 0 else 1.0)
