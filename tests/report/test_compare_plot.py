"""Defence comparison figure: bars are the comparison rows' values, the top panel spans 0..1, the titles carry the
numbers of cases and a single case is called out (its interval is a point)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from volrob.errors import ConfigError
from volrob.evaluation.compare import compare_models
from volrob.report.compare_plot import comparison_figure, plot_comparison


def _results(cases: tuple[str, ...] = ("c1", "c2", "c3")) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = [{"model": m, "cell": f"{m}__pgd__eps4__aaaa", "attack": "pgd", "budget_key": "eps", "budget": 4.0,
             "eps": 4.0, "case": c, "region": "WT", "metric": "dice", "clean": float(rng.uniform(0.6, 1)),
             "adversarial": float(rng.uniform(0, 0.6))} for m in ("ref", "rob") for c in cases]
    return pd.DataFrame(rows)


def _table(cases: tuple[str, ...] = ("c1", "c2", "c3")) -> pd.DataFrame:
    return compare_models(_results(cases), {"ref": "none", "rob": "pgd_at"}, "ref", n_boot=50)


def test_bars_titles_and_limits() -> None:
    table = _table()
    fig = comparison_figure(table)
    top, bottom = fig.axes[:2]
    assert top.get_ylim() == (0.0, 1.0)
    assert top.get_title() == "WT Dice per model: clean and under attack, n = 3 cases"
    assert bottom.get_title() == "difference from the reference ref, paired on n = 3 cases"
    heights = [p.get_height() for p in top.patches]
    ref, rob = table.set_index("model").loc["ref"], table.set_index("model").loc["rob"]
    assert heights == pytest.approx([ref["clean_dice"], ref["adversarial_dice"], rob["clean_dice"],
                                     rob["adversarial_dice"]])
    assert [p.get_height() for p in bottom.patches][2:] == pytest.approx([rob["diff_clean"], rob["diff_adversarial"]])
    assert fig.get_suptitle() == ""  # no single-case note


def test_one_case_is_called_out(tmp_path: Path) -> None:
    fig = comparison_figure(_table(("c1",)))
    assert fig.get_suptitle() == "n = 1: no confidence interval" and "n = 1 case" in fig.axes[0].get_title()
    assert plot_comparison(_table(("c1",)), tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("table", "match"), [
    (lambda: _table().drop(columns="n"), r"comparison plot: table lacks column\(s\) \['n'\]"),
    (lambda: _table().to_dict(), "table must be a pandas DataFrame"),
])
def test_bad_input(tmp_path: Path, table, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        plot_comparison(table(), tmp_path / "c.png")
    assert "\n" not in str(err.value) and not (tmp_path / "c.png").exists()
