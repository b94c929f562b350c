"""Figure words: budget text (one function for the engine's tables, the command line and the report), case
counts, budget axis names, metric axis limits."""

from __future__ import annotations

import numpy as np
import pytest

from volrob.report.figure import new_figure
from volrob.report.labels import budget_axis_label, budget_text, cases_text, metric_limits, setting_text


@pytest.mark.parametrize(("key", "value", "text"), [
    ("eps", 8.0, "eps=8"), ("eps", 2.5, "eps=2.5"), ("q_max", 20, "q_max=20"), (np.nan, np.nan, "default budget"),
    ("", 1.0, "default budget"), (None, None, "default budget"), ("eps", np.float64(4.0), "eps=4")])
def test_budget_text(key: object, value: object, text: str) -> None:
    assert budget_text(key, value) == text


def test_texts() -> None:
    assert setting_text("pgd", "eps", 8.0) == "pgd eps=8" and setting_text("noise", np.nan, np.nan) == "noise"
    assert (cases_text(1), cases_text(4), cases_text([3, 4, 3]), cases_text(np.int64(2))) == (
        "n = 1 case", "n = 4 cases", "n = 3–4 cases", "n = 2 cases")
    assert budget_axis_label("eps") == "ε (1/255)" and budget_axis_label("q_max") == "q_max"


def test_metric_limits() -> None:
    ax = new_figure((3, 3)).add_subplot()
    ax.plot([0, 1], [0.743, 0.746])
    metric_limits(ax, "dice", [0.743, 0.746])
    assert ax.get_ylim() == (0.0, 1.0)
    metric_limits(ax, "hd95", [3.0, 40.0])
    assert ax.get_ylim() == pytest.approx((0.0, 42.0))
