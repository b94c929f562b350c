"""Defence comparison: CIs and Wilcoxon p against direct numpy/scipy computations, pairing by case, reference
selection and its errors, the plot (rows name the scored ``model``; the caller supplies each model's defence)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from volrob.engine.config import ModelEntry
from volrob.errors import ConfigError, DataError
from volrob.evaluation.compare import COMPARISON_COLUMNS, compare_models, format_comparison, resolve_reference
from volrob.report.compare_plot import comparison_series, plot_comparison

CASES = [f"c{i}" for i in range(7)]
SETTINGS = {"pgd__eps4__aaaa0000": ("pgd", "eps", 4.0), "fgsm__eps4__bbbb0000": ("fgsm", "eps", 4.0)}


def _rows(seed: int = 0) -> pd.DataFrame:
    """Random per-case Dice for models ``ref`` and ``rob`` (two settings, three regions) plus HD95 rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for model in ("ref", "rob"):
        for setting, (attack, key, budget) in SETTINGS.items():
            for case in CASES:
                for region in ("TC", "WT", "ET"):
                    for metric in ("dice", "hd95"):
                        rows.append({"model": model, "cell": f"{model}__{setting}", "attack": attack,
                                     "budget_key": key, "budget": budget, "eps": budget, "case": case,
                                     "region": region, "metric": metric, "clean": float(rng.uniform(0.5, 1)),
                                     "adversarial": float(rng.uniform(0, 1))})
    return pd.DataFrame(rows)


def _boot(x: np.ndarray, seed: int, n_boot: int) -> tuple[float, float]:
    """Reference percentile bootstrap: n_boot resamples of the case-sorted values from default_rng(seed)."""
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    return tuple(np.quantile(x[idx].mean(axis=1), [0.025, 0.975]))


def _values(rows: pd.DataFrame, model: str, attack: str, region: str, col: str) -> pd.Series:
    sel = rows[(rows.model == model) & (rows.attack == attack) & (rows.region == region)
               & (rows.metric == "dice")]
    return sel.set_index("case")[col].sort_index()


def test_statistics_match_direct_computation() -> None:
    rows = _rows()
    table = compare_models(rows, {"ref": "none", "rob": "pgd_at"}, "ref", n_boot=500, seed=3)
    assert list(table.columns) == COMPARISON_COLUMNS and len(table) == 2 * 2 * 3
    for r in table.to_dict("records"):
        for col, key in (("clean", "clean"), ("adversarial", "adversarial")):
            x = _values(rows, r["model"], r["attack"], r["region"], col)
            assert r[f"{key}_dice"] == pytest.approx(x.mean())
            assert (r[f"{key}_ci_low"], r[f"{key}_ci_high"]) == pytest.approx(_boot(x.to_numpy(), 3, 500))
        assert r["n"] == len(CASES) and r["defence"] == {"ref": "none", "rob": "pgd_at"}[r["model"]]
        if r["model"] == "ref":
            assert np.isnan(r["diff_adversarial"]) and np.isnan(r["p_clean"])
            continue
        for col, diff, p in (("adversarial", "diff_adversarial", "p_adversarial"), ("clean", "diff_clean", "p_clean")):
            a = _values(rows, "rob", r["attack"], r["region"], col)
            b = _values(rows, "ref", r["attack"], r["region"], col)
            d = (a - b).to_numpy()
            assert r[diff] == pytest.approx(d.mean())
            assert (r[f"{diff}_ci_low"], r[f"{diff}_ci_high"]) == pytest.approx(_boot(d, 3, 500))
            assert r[p] == pytest.approx(stats.wilcoxon(a.to_numpy(), b.to_numpy()).pvalue)
        a = _values(rows, "rob", r["attack"], r["region"], "adversarial")
        b = _values(rows, "ref", r["attack"], r["region"], "adversarial")
        assert r["p_adversarial_greater"] == pytest.approx(
            stats.wilcoxon(a.to_numpy(), b.to_numpy(), alternative="greater").pvalue)
        assert r["n_paired"] == len(CASES)


def test_row_order_does_not_matter_and_pairs_by_case() -> None:
    rows = _rows(1)
    table = compare_models(rows, {"ref": "none", "rob": "vaft"}, "ref", n_boot=300)
    shuffled = rows.sample(frac=1.0, random_state=5).reset_index(drop=True)
    again = compare_models(shuffled, {"ref": "none", "rob": "vaft"}, "ref", n_boot=300)
    key = ["model", "setting", "region"]
    pd.testing.assert_frame_equal(table.sort_values(key).reset_index(drop=True),
                                  again.sort_values(key).reset_index(drop=True))
    # relabelling the cases of the robust model breaks the pairing: the difference changes
    swapped = rows.copy()
    rob = swapped.model == "rob"
    swapped.loc[rob, "case"] = swapped.loc[rob, "case"].map(dict(zip(CASES, CASES[::-1], strict=True)))
    other = compare_models(swapped, {"ref": "none", "rob": "vaft"}, "ref", n_boot=300)
    rob_rows = table.model == "rob"
    assert np.allclose(other.loc[rob_rows, "adversarial_dice"], table.loc[rob_rows, "adversarial_dice"])
    assert not np.allclose(other.loc[rob_rows, "p_adversarial"], table.loc[rob_rows, "p_adversarial"])


def test_identical_models_have_zero_difference_and_p_one() -> None:
    rows = _rows(2)
    same = rows[rows.model == "ref"].copy()
    same["model"], same["cell"] = "twin", same["cell"].str.replace("ref__", "twin__")
    table = compare_models(pd.concat([rows[rows.model == "ref"], same]), {"ref": "none", "twin": "none"},
                           "ref", n_boot=100)
    twin = table[table.model == "twin"]
    assert (twin["diff_adversarial"] == 0).all() and (twin["p_adversarial"] == 1).all()
    assert (twin["diff_clean_ci_low"] == 0).all() and (twin["diff_clean_ci_high"] == 0).all()


def test_bad_rows() -> None:
    rows = _rows()
    with pytest.raises(ConfigError, match="reference: 'nope'"):
        compare_models(rows, {"ref": "none", "rob": "x"}, "nope")
    with pytest.raises(ConfigError, match=r"no defence name for model\(s\) \['rob'\]"):
        compare_models(rows, {"ref": "none"}, "ref")
    with pytest.raises(ConfigError, match="missing columns"):
        compare_models(rows.drop(columns=["case"]), {"ref": "none", "rob": "x"}, "ref")
    with pytest.raises(DataError, match="no Dice rows"):
        compare_models(rows[rows.metric == "hd95"], {"ref": "none", "rob": "x"}, "ref")
    fewer = rows[~((rows.model == "rob") & (rows.case == "c0"))]
    with pytest.raises(DataError, match="different cases"):
        compare_models(fewer, {"ref": "none", "rob": "x"}, "ref")
    dup = pd.concat([rows, rows[(rows.model == "rob") & (rows.case == "c0")]])
    with pytest.raises(DataError, match="several Dice rows"):
        compare_models(dup, {"ref": "none", "rob": "x"}, "ref")


def _model(name: str, *, defended: bool = False) -> ModelEntry:
    return ModelEntry(name, checkpoint=f"{name}.pt", defended=defended)


def test_resolve_reference() -> None:
    a, b, c = _model("a"), _model("b", defended=True), _model("c", defended=True)
    assert resolve_reference([a, b, c], None) == "a"
    assert resolve_reference([a, b, c], "c") == "c"
    with pytest.raises(ConfigError, match=r"reference: 'z' is not one of the models \['a', 'b'\]"):
        resolve_reference([a, b], "z")
    assert resolve_reference([a, _model("d"), b], None) is None  # several undefended: no comparison
    assert resolve_reference([b, c], None) is None
    assert resolve_reference([a, _model("d"), b], "d") == "d"


def test_plot_and_text_table(tmp_path: Path) -> None:
    table = compare_models(_rows(), {"ref": "none", "rob": "pgd_at"}, "ref", n_boot=100)
    path = plot_comparison(table, tmp_path / "cmp.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="must be a .png"):
        plot_comparison(table, tmp_path / "cmp.jpg")
    with pytest.raises(ConfigError, match="region: no comparison rows for 'XX'"):
        plot_comparison(table, tmp_path / "x.png", region="XX")
    labels, series = comparison_series(table, "TC")
    assert labels == ["clean", "pgd eps=4", "fgsm eps=4"] and [s.model for s in series] == ["ref", "rob"]
    ref, rob = series
    tc = table[table.region == "TC"].set_index(["model", "setting"])
    for i, setting in enumerate(SETTINGS, start=1):
        row = tc.loc[("rob", setting)]
        assert rob.dice[0][i] == row["adversarial_dice"] and rob.dice[2][i] == row["adversarial_ci_high"]
        assert rob.diff[0][i] == row["diff_adversarial"] and rob.diff[1][i] == row["diff_adversarial_ci_low"]
    first = tc.loc[("rob", next(iter(SETTINGS)))]
    assert (rob.dice[0][0], rob.diff[0][0], rob.diff[2][0]) == (first["clean_dice"], first["diff_clean"],
                                                                 first["diff_clean_ci_high"])
    assert np.isnan(ref.diff[0]).all() and rob.defence == "pgd_at"  # the reference has no difference to itself
    text = format_comparison(table).splitlines()
    assert len(text) == 1 + 2 * 2 and "pgd eps=4" in text[1] and "reference" in text[1]
    rob = table[(table.region == "WT") & (table.model == "rob")].iloc[0]
    assert f"p={rob['p_adversarial']:.3g}" in "\n".join(text)
