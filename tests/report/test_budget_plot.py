"""Score vs budget: the table against a hand computation (means, bootstrap CIs on the same values), the figure
against the table (lines, shaded CIs, axes 0..1, titles with n), one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from volrob.errors import ConfigError, DataError
from volrob.evaluation.summary import bootstrap_mean_ci
from volrob.report.budget_plot import BUDGET_COLUMNS, budget_figure, budget_plot, budget_table

# (model, attack, budget_key, budget) -> {case: (clean, adversarial)}; clean is the model's, the same per case
CLEAN = {"A": {"c1": 0.9, "c2": 0.7}, "B": {"c1": 0.6, "c2": 0.8}}
ADV = {("A", "pgd", "eps", 4.0): {"c1": 0.5, "c2": 0.3}, ("A", "pgd", "eps", 8.0): {"c1": 0.2, "c2": 0.0},
       ("A", "vafa", "q_max", 20.0): {"c1": 0.6, "c2": 0.4}, ("B", "pgd", "eps", 4.0): {"c1": 0.55, "c2": 0.75},
       ("B", "pgd", "eps", 8.0): {"c1": 0.1, "c2": 0.5}}


def _row(model: str, attack: str, key: object, budget: float, case: str, adv: float, **kw: object) -> dict:
    return {"model": model, "source": model, "white_box": True, "case": case, "attack": attack, "budget_key": key,
            "budget": budget, "region": "WT", "metric": "dice", "clean": CLEAN[model][case], "adversarial": adv,
            **kw}


def _results() -> pd.DataFrame:
    rows = [_row(m, a, k, b, c, v) for (m, a, k, b), cases in ADV.items() for c, v in cases.items()]
    rows += [_row("A", "noise", np.nan, np.nan, c, 0.1) for c in CLEAN["A"]]  # no budget: left out
    rows += [_row("A", "pgd", "eps", 4.0, c, 0.01, source="B", white_box=False) for c in CLEAN["A"]]  # transfer
    rows += [_row("A", "pgd", "eps", 4.0, c, 0.02, region="TC") for c in CLEAN["A"]]
    rows += [_row("A", "pgd", "eps", 4.0, c, 0.03, metric="hd95") for c in CLEAN["A"]]
    return pd.DataFrame(rows).iloc[::-1].reset_index(drop=True)  # reversed: cases come c2 first


def _expected(n_boot: int = 200, seed: int = 3) -> list[dict]:
    out = []
    for model, attack in (("A", "pgd"), ("A", "vafa"), ("B", "pgd")):
        settings = sorted((k, b) for (m, a, k, b) in ADV if (m, a) == (model, attack))
        for key, budget, values in [(settings[0][0], 0.0, CLEAN[model])] + [
                (k, b, ADV[(model, attack, k, b)]) for k, b in settings]:
            x = np.array([values[c] for c in sorted(values)])
            low, high = bootstrap_mean_ci(x, n_boot=n_boot, seed=seed)
            out.append({"model": model, "attack": attack, "budget_key": key, "budget": budget, "n": 2,
                        "mean": x.mean(), "ci_low": low, "ci_high": high})
    return out


def test_budget_table_matches_a_hand_computation() -> None:
    table = budget_table(_results(), n_boot=200, seed=3)
    assert list(table.columns) == BUDGET_COLUMNS
    got = table.sort_values(["model", "attack", "budget"]).to_dict("records")
    want = sorted(_expected(), key=lambda r: (r["model"], r["attack"], r["budget"]))
    assert len(got) == len(want) == 8
    for g, w in zip(got, want, strict=True):
        assert {k: g[k] for k in ("model", "attack", "budget_key", "n")} == {k: w[k] for k in ("model", "attack",
                                                                                               "budget_key", "n")}
        assert (g["budget"], g["mean"], g["ci_low"], g["ci_high"]) == pytest.approx(
            (w["budget"], w["mean"], w["ci_low"], w["ci_high"]))
    assert "noise" not in set(table["attack"])  # no budget: no budget axis
    assert table.groupby(["model", "attack"], sort=False)["budget"].first().eq(0.0).all()  # clean first


def test_budget_table_reads_csv_booleans_and_leaves_unbudgeted_attacks_out() -> None:
    results = _results()
    as_text = budget_table(results.assign(white_box=results["white_box"].map(str)), n_boot=50)
    pd.testing.assert_frame_equal(as_text, budget_table(results, n_boot=50))
    empty = budget_table(results[results["attack"] == "noise"], n_boot=50)
    assert empty.empty and list(empty.columns) == BUDGET_COLUMNS


def _drawn(table: pd.DataFrame, **kw: object) -> Figure:
    return budget_figure(table, **kw)


def test_budget_figure_draws_exactly_the_table() -> None:
    table = budget_table(_results(), n_boot=200)
    fig = _drawn(table)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["pgd, n = 2 cases", "vafa, n = 2 cases"]
    assert fig.get_suptitle() == "Dice (WT) vs budget, white-box"
    for ax, attack in zip(panels, ("pgd", "vafa"), strict=True):
        assert ax.get_ylim() == (0.0, 1.0) and ax.get_xlim()[0] == 0.0
        lines = {line.get_label(): line for line in ax.get_lines()}
        rows = table[table["attack"] == attack]
        assert set(lines) == set(rows["model"])
        for model, line in lines.items():
            mine = rows[rows["model"] == model].sort_values("budget")
            np.testing.assert_allclose(line.get_xdata(), mine["budget"])
            np.testing.assert_allclose(line.get_ydata(), mine["mean"])
        band_y = np.concatenate([p.get_paths()[0].vertices[:, 1] for p in ax.collections])
        for v in [*rows["ci_low"], *rows["ci_high"]]:
            assert np.isclose(band_y, v).any()  # the shaded CI runs through every bound
    assert "ε (1/255)" in panels[0].get_xlabel() and "q_max" in panels[1].get_xlabel()
    assert "95 % bootstrap CI" in panels[0].get_ylabel() and panels[1].get_legend().get_title().get_text()


def test_single_model_one_case_and_other_metrics() -> None:
    results = _results()
    one = budget_table(results[(results["model"] == "B") & (results["case"] == "c1")], n_boot=50)
    assert (one["n"] == 1).all() and (one["ci_low"] == one["mean"]).all()
    ax = _drawn(one).axes[0]
    assert ax.get_title() == "pgd, n = 1 case\nn = 1: no interval" and len(ax.get_lines()) == 1
    hd = budget_table(results, metric="hd95", n_boot=50)
    ax = _drawn(hd, metric="hd95").axes[0]
    assert ax.get_ylim()[0] == 0.0 and ax.get_ylim()[1] >= hd["ci_high"].max()


def test_budget_plot_writes_a_png(tmp_path: Path) -> None:
    out = budget_plot(budget_table(_results(), n_boot=50), tmp_path / "f" / "budget.png")
    image = matplotlib.image.imread(out)
    assert image.ndim == 3 and np.ptp(image[..., :3]) > 0


@pytest.mark.parametrize(("call", "error", "word"), [
    (lambda r, t, p: budget_table(r.to_dict()), ConfigError, "results must be a pandas DataFrame"),
    (lambda r, t, p: budget_table(r.drop(columns="clean")), ConfigError, r"budget_table: results lacks .*'clean'"),
    (lambda r, t, p: budget_table(r, region="XX"), ConfigError, "region 'XX'"),
    (lambda r, t, p: budget_table(r, metric="nsd"), ConfigError, "metric 'nsd'"),
    (lambda r, t, p: budget_table(r.assign(white_box=False)), DataError, "no white-box rows"),
    (lambda r, t, p: budget_table(r.assign(white_box="maybe")), DataError, "'white_box'"),
    (lambda r, t, p: budget_table(r.assign(adversarial=np.nan)), DataError, "'adversarial'"),
    (lambda r, t, p: budget_table(r, n_boot=0), ConfigError, "n_boot"),
    (lambda r, t, p: budget_table(pd.concat([r, r])), DataError, "several rows for case"),
    (lambda r, t, p: budget_figure(t.drop(columns="ci_low")), ConfigError, "budget_figure: table lacks"),
    (lambda r, t, p: budget_figure(t.iloc[:0]), DataError, "table has no rows"),
    (lambda r, t, p: budget_figure(t.assign(mean="high")), DataError, "'mean'"),
    (lambda r, t, p: budget_plot(t, p.with_suffix(".jpg")), ConfigError, r"budget_plot: path must be a \.png"),
])
def test_bad_input(tmp_path: Path, call, error: type, word: str) -> None:
    results = _results()
    png = tmp_path / "x.png"
    with pytest.raises(error, match=word) as err:
        call(results, budget_table(results, n_boot=20), png)
    assert "\n" not in str(err.value) and not png.exists()
