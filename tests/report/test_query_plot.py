"""Dice vs queries figure: per-model means over cases (checked on the drawn lines), axes from 0 (Dice 0..1), a title
with attack, region and n, valid PNG, one-line errors."""

from __future__ import annotations

import importlib
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from volrob.errors import ConfigError
from volrob.report.query_plot import query_figure, query_plot

query_plot_module = importlib.import_module("volrob.report.query_plot")


def _table() -> pd.DataFrame:
    rows = []
    values = {("A", "c1"): [0.9, 0.8, 0.5, 0.4], ("A", "c2"): [0.7, 0.6, 0.5, 0.2],
              ("B", "c1"): [0.6, 0.6, 0.6, 0.3]}
    for (model, case), vals in values.items():
        for q, v in zip((0, 10, 100, 1000), vals, strict=True):
            common = {"case": case, "model": model, "queries": q, "metric": "dice"}
            rows.append({**common, "region": "WT", "adversarial": v})
            rows.append({**common, "region": "TC", "adversarial": 0.0})
    return pd.DataFrame(rows)


def test_query_plot_writes_a_readable_png(tmp_path: Path) -> None:
    out = query_plot(_table(), tmp_path / "sub" / "queries.png")
    assert out == tmp_path / "sub" / "queries.png"
    image = matplotlib.image.imread(out)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert np.ptp(image[..., :3]) > 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["queries.png"]


def test_query_plot_draws_the_means_over_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[Figure] = []
    monkeypatch.setattr(query_plot_module, "save_png", lambda fig, path: drawn.append(fig) or path)
    query_plot(_table(), tmp_path / "q.png")
    ax = drawn[0].axes[0]
    assert ax.get_xscale() == "log"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"A: attacked", "A: clean", "B: attacked", "B: clean"}
    np.testing.assert_allclose(lines["A: attacked"].get_xdata(), [10, 100, 1000])
    np.testing.assert_allclose(lines["A: attacked"].get_ydata(), [0.7, 0.5, 0.3])  # hand means of c1 and c2
    np.testing.assert_allclose(lines["B: attacked"].get_ydata(), [0.6, 0.6, 0.3])
    np.testing.assert_allclose(lines["A: clean"].get_ydata(), [0.8, 0.8])  # horizontal line at the clean mean
    np.testing.assert_allclose(lines["B: clean"].get_ydata(), [0.6, 0.6])
    assert "Dice" in ax.get_ylabel() and "WT" in ax.get_ylabel() and "queries" in ax.get_xlabel()


def test_query_plot_other_region_and_clean_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[Figure] = []
    monkeypatch.setattr(query_plot_module, "save_png", lambda fig, path: drawn.append(fig) or path)
    query_plot(_table(), tmp_path / "q.png", region="TC")
    np.testing.assert_allclose(drawn[0].axes[0].get_lines()[0].get_ydata(), [0.0, 0.0, 0.0])
    query_plot(_table()[_table()["queries"] == 0], tmp_path / "q.png")
    assert [line.get_label() for line in drawn[1].axes[0].get_lines()] == ["A: clean", "B: clean"]


def test_bad_query_plot_inputs(tmp_path: Path) -> None:
    png = tmp_path / "x.png"
    cases = [
        (lambda: query_plot(_table().to_dict(), png), "DataFrame"),
        (lambda: query_plot(_table().drop(columns="queries"), png), "queries"),
        (lambda: query_plot(_table().drop(columns="case"), png), "case"),
        (lambda: query_plot(_table().rename(columns={"adversarial": "score"}), png), "adversarial"),
        (lambda: query_plot(_table(), png, region="XX"), "region 'XX'"),
        (lambda: query_plot(_table(), png, metric="hd95"), "metric 'hd95'"),
        (lambda: query_plot(_table().assign(queries=-1), png), "queries"),
        (lambda: query_plot(_table().assign(queries=2.5), png), "queries"),
        (lambda: query_plot(_table().assign(adversarial="high"), png), "adversarial"),
        (lambda: query_plot(_table(), tmp_path / "x.jpg"), "png"),
    ]
    for call, word in cases:
        with pytest.raises(ConfigError, match=word) as err:
            call()
        assert "\n" not in str(err.value)
    assert not png.exists()


def test_axes_start_at_zero_and_the_title_says_what_is_shown() -> None:
    narrow = _table().assign(adversarial=lambda t: 0.743 + 0.003 * (t["queries"] > 0), attack="square")
    ax = query_figure(narrow).axes[0]
    assert ax.get_ylim() == (0.0, 1.0)  # a 0.3 % change is not blown up to the full height
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "100", "1000"]  # the scored counts, as counts
    assert ax.get_title() == "Dice (WT) vs queries: square\non A, B, n = 1–2 cases"  # B has one case
    ax = query_figure(_table(), region="TC").axes[0]
    assert ax.get_ylim() == (0.0, 1.0) and "black-box attack" in ax.get_title() and "(TC)" in ax.get_title()
    hd = _table().assign(metric="hd95", adversarial=lambda t: 10.0 + t["queries"] / 100)
    ax = query_figure(hd, metric="hd95").axes[0]
    assert ax.get_ylim()[0] == 0.0 and ax.get_ylim()[1] >= 20.0 and ax.get_title().startswith("HD95 (mm) (WT)")
    assert [line.get_linestyle() for line in ax.get_lines()][:2] == ["-", "--"] and ax.get_xscale() == "log"
