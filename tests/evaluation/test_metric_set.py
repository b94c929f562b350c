"""The metric set: defaults per label convention, each row's value equal to its definition's own function, the miss
penalty of hd95_brats, the record written to run.json, and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.masks import box

from volrob.errors import ConfigError
from volrob.evaluation.empty_policy import image_diagonal_mm
from volrob.evaluation.lesionwise import lesion_wise
from volrob.evaluation.metric_set import DEFINITIONS, MetricSet, check_metrics, resolve_metric_set
from volrob.evaluation.metrics import case_metrics, region_metrics
from volrob.evaluation.surface_elements import hd_surface_elements

SHAPE = (24, 20, 16)
SPACING = (1.0, 1.2, 2.0)


def _stacks() -> tuple[np.ndarray, np.ndarray]:
    gt = np.stack([box(SHAPE, (4, 4, 4), (9, 9, 8)), box(SHAPE, (3, 3, 3), (12, 10, 9)), np.zeros(SHAPE, bool)])
    pred = np.stack([box(SHAPE, (5, 4, 4), (10, 9, 8)) | box(SHAPE, (18, 15, 12), (20, 17, 14)),
                     box(SHAPE, (3, 3, 3), (12, 11, 9)), box(SHAPE, (10, 10, 10), (12, 12, 12))])
    return pred, gt


@pytest.mark.parametrize(("convention", "metrics", "challenge"), [
    ("brats2021", ("dice", "hd95_brats", "nsd"), None),
    ("brats2023", ("dice", "hd95_brats", "nsd", "lesion_dice", "lesion_hd95"), "gli"),
    ("brats2024", ("dice", "hd95_brats", "nsd", "lesion_dice", "lesion_hd95"), "gli2024"),
    ("msd", ("dice", "hd95", "nsd"), None),
])
def test_defaults_by_convention(convention: str, metrics: tuple[str, ...], challenge: str | None) -> None:
    ms = resolve_metric_set(convention)
    assert (ms.metrics, ms.challenge) == (metrics, challenge)


def test_explicit_choices_win() -> None:
    assert resolve_metric_set("brats2023", ["dice", "hd95", "nsd"]).metrics == ("dice", "hd95", "nsd")
    assert resolve_metric_set("brats2023", "dice,hd95").challenge == "gli"  # still sets hd95_brats' miss penalty
    assert resolve_metric_set("msd", challenge="met").metrics == ("dice", "hd95", "nsd", "lesion_dice", "lesion_hd95")
    assert resolve_metric_set("brats2021", None, "men").challenge == "men"
    assert resolve_metric_set("msd").legacy and not resolve_metric_set("brats2021").legacy


def test_every_row_equals_its_definition() -> None:
    pred, gt = _stacks()
    ms = MetricSet(("dice", "hd95", "hd95_brats", "nsd", "lesion_dice", "lesion_hd95"), "gli", "brats", 1.5)
    scored = ms.score(pred, gt, SPACING, ["TC", "WT", "ET"])
    got = {(r["region"], r["metric"]): r["value"] for r in scored.rows}
    assert len(scored.rows) == 18 and [r["metric"] for r in scored.rows[:6]] == list(ms.metrics)
    for i, region in enumerate(["TC", "WT", "ET"]):
        legacy = region_metrics(pred[i], gt[i], SPACING, nsd_tolerance_mm=1.5, empty_policy="brats")
        lw = lesion_wise(pred[i], gt[i], SPACING, "gli", region)
        assert scored.lesions[region] == lw
        assert got[(region, "dice")] == legacy["dice"] and got[(region, "hd95")] == legacy["hd95"]
        assert got[(region, "nsd")] == legacy["nsd"]
        assert got[(region, "hd95_brats")] == hd_surface_elements(pred[i], gt[i], SPACING, miss_mm=374.0)
        assert (got[(region, "lesion_dice")], got[(region, "lesion_hd95")]) == (lw.dice, lw.hd95)
    assert got[("ET", "hd95_brats")] == 374.0 and got[("ET", "hd95")] == 373.13  # only predicted: each a miss
    assert got[("TC", "lesion_dice")] == pytest.approx(0.8 / 2)  # one lesion (Dice 0.8) plus a false positive


def test_legacy_set_equals_case_metrics() -> None:
    pred, gt = _stacks()
    assert MetricSet().score(pred, gt, SPACING, ["TC", "WT", "ET"]).rows == case_metrics(pred, gt, SPACING)


def test_miss_penalty_of_hd95_brats() -> None:
    pred, gt = _stacks()  # ET: predicted, absent from the reference

    def et(challenge: str | None, policy: str) -> float:
        return MetricSet(("hd95_brats",), challenge, policy).score(pred, gt, SPACING, ["TC", "WT", "ET"]).rows[2][
            "value"]

    assert et(None, "brats") == 373.13 and et(None, "diagonal") == pytest.approx(image_diagonal_mm(SHAPE, SPACING))
    assert et("gli", "diagonal") == 374.0 and et("gli2024", "brats") == 337.0  # a challenge sets its own penalty


def test_record_names_every_definition_and_parameter() -> None:
    rec = resolve_metric_set("brats2024").record()
    assert json.loads(json.dumps(rec)) == rec
    assert rec["metrics"] == ["dice", "hd95_brats", "nsd", "lesion_dice", "lesion_hd95"]
    assert rec["definitions"] == {m: DEFINITIONS[m] for m in rec["metrics"]}
    assert rec["challenge"]["miss_penalty_mm"] == 337.0 and rec["challenge"]["region_threshold_mm3"] == {"ET": 10.0}
    assert rec["hd_percentile"] == 95.0 and rec["nsd_tolerance_mm"] == 1.0 and rec["empty_policy_hd95_mm"] == 373.13
    assert resolve_metric_set("msd").record()["challenge"] is None


@pytest.mark.parametrize(("make", "match"), [
    (lambda: check_metrics(["dice", "hd99"]), r"unknown metric\(s\) \['hd99'\]"),
    (lambda: check_metrics(["dice", "dice"]), "twice"),
    (lambda: check_metrics([]), "non-empty"),
    (lambda: check_metrics(""), "non-empty"),
    (lambda: check_metrics([1, 2]), "non-empty list of names"),
    (lambda: MetricSet(("dice", "lesion_dice")), "need a challenge"),
    (lambda: MetricSet(("dice",), "gbm"), "unknown challenge"),
    (lambda: MetricSet(("dice",), None, "zero"), "empty_policy"),
    (lambda: MetricSet(("dice",), None, "brats", 0.0), "nsd_tolerance_mm"),
    (lambda: resolve_metric_set("brats2021", ["lesion_hd95"]), "need a challenge"),
    (lambda: MetricSet().score(np.zeros((3, 4, 4, 4)), np.zeros((3, 4, 4, 5)), SPACING, ["TC", "WT", "ET"]),
     "shapes differ"),
    (lambda: MetricSet().score(np.zeros((3, 4, 4, 4)), np.zeros((3, 4, 4, 4)), SPACING, ["TC", "WT"]),
     "distinct names"),
    (lambda: MetricSet().score(np.zeros((3, 4, 4, 4)), np.zeros((3, 4, 4, 4)), (1, 1), ["TC", "WT", "ET"]),
     "spacing"),
])
def test_bad_inputs(make, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()
