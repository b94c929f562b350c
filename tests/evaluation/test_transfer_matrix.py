"""Transfer matrices on a hand-made table: drops, success rates, ratios and the black-box flag by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from volrob.evaluation.sanity import blackbox_stronger, format_flags
from volrob.evaluation.transfer_matrix import MATRIX_COLUMNS, pivot, transfer_matrices


def _rows(values: dict[tuple[str, str], list[tuple[float, float]]]) -> pd.DataFrame:
    """Result rows (``model``: the scored target) of one attack: per (source, target) the cases' (clean,
    adversarial) WT Dice; TC is the same shifted by +0.1 adversarial."""
    rows = []
    for (s, t), cases in values.items():
        for i, (clean, adv) in enumerate(cases):
            for region, shift in (("WT", 0.0), ("TC", 0.1)):
                rows.append({"source": s, "model": t, "white_box": s == t, "attack": "pgd", "budget_key": "eps",
                             "budget": 8.0, "case": f"c{i}", "region": region, "metric": "dice",
                             "clean": clean, "adversarial": adv + shift})
                rows.append({"source": s, "model": t, "white_box": s == t, "attack": "pgd", "budget_key": "eps",
                             "budget": 8.0, "case": f"c{i}", "region": region, "metric": "hd95",
                             "clean": 3.0, "adversarial": 90.0})
    return pd.DataFrame(rows)


TABLE = {("a", "a"): [(0.8, 0.2), (0.6, 0.5)], ("a", "b"): [(0.9, 0.8), (0.7, 0.3)],
         ("b", "a"): [(0.8, 0.7), (0.6, 0.6)], ("b", "b"): [(0.9, 0.1), (0.7, 0.1)]}


def test_numbers_by_hand() -> None:
    m = transfer_matrices(_rows(TABLE), region="WT", success_drop=0.5)
    assert list(m.columns) == MATRIX_COLUMNS and len(m) == 4
    assert (m["white_box"] == (m["source"] == m["model"])).all() and (m["n"] == 2).all()
    drop = pivot(m, "dice_drop", ["a", "b"], ["a", "b"])
    assert drop.loc["a", "a"] == pytest.approx((0.6 + 0.1) / 2)
    assert drop.loc["a", "b"] == pytest.approx((0.1 + 0.4) / 2)
    assert drop.loc["b", "a"] == pytest.approx((0.1 + 0.0) / 2)
    success = pivot(m, "success_rate", ["a", "b"], ["a", "b"])
    assert success.loc["a", "a"] == 0.5 and success.loc["a", "b"] == 0.5  # 0.3 <= 0.35 counts, 0.8 does not
    assert success.loc["b", "b"] == 1.0 and success.loc["b", "a"] == 0.0
    assert pivot(transfer_matrices(_rows(TABLE), success_drop=0.87), "success_rate", ["a", "b"],
                 ["a", "b"]).loc["b", "b"] == 0.5  # 0.1 <= 0.13 * 0.9 holds, 0.1 <= 0.13 * 0.7 fails
    ratio = pivot(m, "transfer_ratio", ["a", "b"], ["a", "b"])
    assert ratio.loc["a", "b"] == pytest.approx(0.25 / 0.7) and ratio.loc["b", "a"] == pytest.approx(0.05 / 0.35)
    assert ratio.loc["a", "a"] == pytest.approx(1.0)
    tc = transfer_matrices(_rows(TABLE), region="TC")
    assert pivot(tc, "dice_drop", ["a", "b"], ["a", "b"]).loc["a", "a"] == pytest.approx(0.25)
    assert (tc["region"] == "TC").all()
    assert list(pivot(m, "dice_drop", ["b", "a"], ["b", "a"]).index) == ["b", "a"]  # the caller's order


def test_blackbox_stronger_flag() -> None:
    stronger = dict(TABLE)
    stronger[("b", "a")] = [(0.8, 0.0), (0.6, 0.0)]  # drop 0.7 > white-box 0.35 on a
    flag = blackbox_stronger(transfer_matrices(_rows(stronger)), tolerance=0.02)
    assert flag.name == "blackbox_stronger_than_whitebox" and flag.raised and flag.applicable
    assert [(h["source"], h["model"]) for h in flag.evidence] == [("b", "a")]
    assert flag.evidence[0]["blackbox_drop"] == pytest.approx(0.7)
    assert flag.evidence[0]["whitebox_drop"] == pytest.approx(0.35)
    assert "\n" not in flag.evidence[0]["text"] and flag.message.startswith("1 case(s): ")
    assert format_flags([flag]).startswith("!! SANITY FLAG: blackbox_stronger_than_whitebox:")
    assert flag.meaning and flag.advice and flag.to_dict()["advice"] == flag.advice
    quiet = blackbox_stronger(transfer_matrices(_rows(TABLE)))
    assert not quiet.raised and quiet.applicable and quiet.message == "ok"
    assert not blackbox_stronger(transfer_matrices(_rows(stronger)), tolerance=0.5).raised


def test_missing_white_box_and_empty_clean() -> None:
    only_cross = {("a", "b"): [(0.0, 0.0), (0.5, 0.1)]}
    m = transfer_matrices(_rows(only_cross))
    assert np.isnan(m["transfer_ratio"].iloc[0])  # no white-box reference for b
    assert m["success_rate"].iloc[0] == 0.5  # a case with clean Dice 0 cannot succeed
    flag = blackbox_stronger(m)
    assert not flag.raised and not flag.applicable and flag.message.startswith("not applicable")
    assert transfer_matrices(_rows(only_cross)[lambda d: d.metric == "hd95"]).empty  # no Dice rows, no matrix
