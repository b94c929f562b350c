"""Per-case clean vs adversarial scatter: the drawn points are the rows' values (PathCollection offsets), one colour
per attack setting, white-box rows of the one model only, the y = x line, axes 0..1, title with n."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from volrob.errors import ConfigError, DataError
from volrob.report.scatter_plot import scatter_figure, scatter_plot


def _results() -> pd.DataFrame:
    rows = []
    values = {("pgd", "eps", 8.0): [(0.9, 0.3), (0.8, 0.5), (0.7, 0.65)], ("vafa", "q_max", 20.0): [(0.9, 0.6),
              (0.8, 0.82), (0.7, 0.1)], ("noise", np.nan, np.nan): [(0.9, 0.88), (0.8, 0.79), (0.7, 0.7)]}
    for (attack, key, budget), pairs in values.items():
        for case, (clean, adv) in zip(("c1", "c2", "c3"), pairs, strict=True):
            common = {"case": case, "attack": attack, "budget_key": key, "budget": budget, "metric": "dice"}
            rows.append({**common, "model": "A", "source": "A", "white_box": True, "region": "WT", "clean": clean,
                         "adversarial": adv})
            rows.append({**common, "model": "A", "source": "B", "white_box": False, "region": "WT", "clean": clean,
                         "adversarial": 0.0})  # transferred: not drawn
            rows.append({**common, "model": "B", "source": "B", "white_box": True, "region": "WT", "clean": 0.5,
                         "adversarial": 0.4})
            rows.append({**common, "model": "A", "source": "A", "white_box": True, "region": "TC", "clean": 0.1,
                         "adversarial": 0.1})
    return pd.DataFrame(rows)


def _points(results: pd.DataFrame, **kw: object) -> tuple[dict[str, np.ndarray], object]:
    ax = scatter_figure(results, **kw).axes[0]
    return {c.get_label(): np.asarray(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)}, ax


def test_points_are_the_rows_values() -> None:
    results = _results()
    points, ax = _points(results, model="A")
    assert list(points) == ["pgd eps=8", "vafa q_max=20", "noise"]
    mine = results[(results.model == "A") & results.white_box & (results.region == "WT")]
    for label, attack in zip(points, ("pgd", "vafa", "noise"), strict=True):
        rows = mine[mine.attack == attack]
        np.testing.assert_array_equal(points[label], rows[["clean", "adversarial"]].to_numpy())
    assert ax.get_xlim() == (0.0, 1.0) and ax.get_ylim() == (0.0, 1.0)
    diagonal = next(line for line in ax.get_lines() if "no change" in line.get_label())
    np.testing.assert_array_equal(diagonal.get_xdata(), diagonal.get_ydata())
    assert any(t.get_text() == "no change" for t in ax.texts)
    title = ax.get_title()
    assert "A:" in title and "Dice (WT)" in title and "white-box" in title and "n = 3 cases" in title
    assert ax.get_xlabel() == "clean Dice, WT" and ax.get_ylabel() == "adversarial Dice, WT"


def test_other_model_region_and_an_unbounded_metric() -> None:
    results = _results()
    points, _ = _points(results, model="B")
    assert all((p == [0.5, 0.4]).all() for p in points.values())
    points, _ = _points(results, model="A", region="TC")
    assert np.concatenate(list(points.values())).tolist() == [[0.1, 0.1]] * 9
    hd = results.assign(metric="hd95", clean=results["clean"] * 20, adversarial=results["adversarial"] * 20)
    _, ax = _points(hd, model="A", metric="hd95")
    assert ax.get_xlim()[0] == 0.0 and ax.get_ylim()[1] >= 18.0 and "HD95" in ax.get_title()


def test_scatter_plot_writes_a_png(tmp_path: Path) -> None:
    out = scatter_plot(_results(), tmp_path / "s.png", model="A")
    assert matplotlib.image.imread(out).ndim == 3


@pytest.mark.parametrize(("call", "error", "word"), [
    (lambda r, p: scatter_figure(r, model="C"), ConfigError, r"model 'C' has no white-box rows .*\['A', 'B'\]"),
    (lambda r, p: scatter_figure(r, model="A", region="ET"), ConfigError, "region 'ET'"),
    (lambda r, p: scatter_figure(r, model="A", metric="nsd"), ConfigError, "metric 'nsd'"),
    (lambda r, p: scatter_figure(r.drop(columns="budget_key"), model="A"), ConfigError, "budget_key"),
    (lambda r, p: scatter_figure([], model="A"), ConfigError, "results must be a pandas DataFrame"),
    (lambda r, p: scatter_figure(r.assign(clean=np.inf), model="A"), DataError, "'clean'"),
    (lambda r, p: scatter_figure(r.assign(white_box="?"), model="A"), DataError, "'white_box'"),
    (lambda r, p: scatter_plot(r, p.with_suffix(".svg"), model="A"), ConfigError, r"scatter_plot: path .*\.png"),
])
def test_bad_input(tmp_path: Path, call, error: type, word: str) -> None:
    png = tmp_path / "x.png"
    with pytest.raises(error, match=word) as err:
        call(_results(), png)
    assert "\n" not in str(err.value) and not png.exists()
