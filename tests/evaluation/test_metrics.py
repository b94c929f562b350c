"""Dice, case_metrics rows, the empty-case policies (never NaN), numpy/torch parity and input validation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from helpers.masks import blob, box
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.metrics import compute_dice

from volrob.data.labels import REGIONS
from volrob.errors import ConfigError
from volrob.evaluation.empty_policy import BRATS_HD95_MM, EmptyPolicy, get_policy, image_diagonal_mm
from volrob.evaluation.metrics import as_mask, case_metrics, dice, hd95, nsd, region_metrics

SPACING = (1.0, 1.0, 1.0)




def test_dice_of_overlapping_boxes_by_hand():
    a = box((10, 10, 10), (0, 0, 0), (4, 4, 4))  # 64 voxels
    b = box((10, 10, 10), (2, 0, 0), (6, 4, 4))  # 64 voxels, overlap 2*4*4 = 32
    assert dice(a, b) == pytest.approx(2 * 32 / 128)
    c = box((10, 10, 10), (0, 0, 0), (2, 2, 2))  # 8 voxels inside a
    assert dice(a, c) == pytest.approx(2 * 8 / 72)
    assert dice(a, box((10, 10, 10), (5, 5, 5), (9, 9, 9))) == 0.0
    assert dice(a, a) == 1.0


def test_dice_matches_monai_on_blobs():
    rng = np.random.default_rng(11)
    for _ in range(3):
        a, b = blob(rng, (20, 22, 18), 2, 0.7), blob(rng, (20, 22, 18), 2, 0.75)
        ref = compute_dice(torch.from_numpy(a)[None, None].float(), torch.from_numpy(b)[None, None].float(),
                           include_background=True).item()
        assert dice(a, b) == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("policy", ["brats", "diagonal"])
def test_both_empty(policy):
    z = np.zeros((8, 9, 10), dtype=bool)
    assert region_metrics(z, z, (1.0, 2.0, 3.0), empty_policy=policy) == {"dice": 1.0, "hd95": 0.0, "nsd": 1.0}
    assert dice(z, z, empty_policy=policy) == 1.0
    assert hd95(z, z, SPACING, empty_policy=policy) == 0.0
    assert nsd(z, z, SPACING, empty_policy=policy) == 1.0


@pytest.mark.parametrize("which", ["pred", "gt"])
def test_exactly_one_empty_brats(which):
    z, m = np.zeros((8, 9, 10), dtype=bool), box((8, 9, 10), (2, 2, 2), (5, 5, 5))
    pred, gt = (z, m) if which == "pred" else (m, z)
    r = region_metrics(pred, gt, (1.0, 2.0, 3.0), empty_policy="brats")
    assert r == {"dice": 0.0, "hd95": BRATS_HD95_MM, "nsd": 0.0}


@pytest.mark.parametrize("which", ["pred", "gt"])
def test_exactly_one_empty_diagonal(which):
    shape, spacing = (8, 9, 10), (1.0, 2.0, 3.0)
    z, m = np.zeros(shape, dtype=bool), box(shape, (2, 2, 2), (5, 5, 5))
    pred, gt = (z, m) if which == "pred" else (m, z)
    r = region_metrics(pred, gt, spacing, empty_policy=EmptyPolicy("diagonal"))
    assert r == {"dice": 0.0, "hd95": pytest.approx(math.sqrt(8**2 + 18**2 + 30**2)), "nsd": 0.0}
    # the penalty exceeds every distance the image can hold
    corners = box(shape, (0, 0, 0), (1, 1, 1)), box(shape, (7, 8, 9), (8, 9, 10))
    assert hd95(*corners, spacing) < r["hd95"]


def test_brats_value_is_the_brats_grid_diagonal():
    assert image_diagonal_mm((240, 240, 155), (1.0, 1.0, 1.0)) == pytest.approx(BRATS_HD95_MM, abs=0.005)


def test_policy_objects_and_validation():
    assert get_policy("diagonal") == EmptyPolicy("diagonal")
    p = EmptyPolicy()
    assert get_policy(p) is p and p.name == "brats"
    assert p.value("dice", pred_empty=False, gt_empty=False, shape=(2, 2, 2), spacing=SPACING) is None
    with pytest.raises(ConfigError, match="empty_policy"):
        EmptyPolicy("nan")
    with pytest.raises(ConfigError, match="empty_policy"):
        get_policy(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="metric"):
        p.value("iou", pred_empty=True, gt_empty=True, shape=(2, 2, 2), spacing=SPACING)
    with pytest.raises(ConfigError, match="same length"):
        image_diagonal_mm((2, 2), SPACING)


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three regions per side, each randomly a blob, empty, or a single voxel."""
    rng = np.random.default_rng(seed)
    shape = (12, 14, 10)

    def one():
        kind = rng.integers(3)
        if kind == 0:
            return np.zeros(shape, dtype=bool)
        if kind == 1:
            return box(shape, rng.integers(0, 10, 3), rng.integers(0, 10, 3) + 1) | blob(rng, shape, 1.0, 0.999)
        return blob(rng, shape, 1.5, rng.uniform(0.6, 0.95))

    return np.stack([one() for _ in REGIONS]), np.stack([one() for _ in REGIONS])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), policy=st.sampled_from(["brats", "diagonal"]),
       spacing=st.tuples(*[st.floats(0.2, 4.0)] * 3), tol=st.floats(0.0, 3.0))
def test_never_nan_and_in_range(seed, policy, spacing, tol):
    pred, gt = _random_case(seed)
    rows = case_metrics(pred, gt, spacing, nsd_tolerance_mm=tol, empty_policy=policy)
    assert len(rows) == 9
    for row in rows:
        assert isinstance(row["value"], float) and math.isfinite(row["value"])
        if row["metric"] != "hd95":
            assert 0.0 <= row["value"] <= 1.0
        else:
            assert row["value"] >= 0.0


def test_case_metrics_rows_match_region_metrics():
    pred, gt = _random_case(7)
    spacing = (1.0, 0.5, 2.0)
    rows = case_metrics(pred, gt, spacing, nsd_tolerance_mm=2.0, empty_policy="diagonal")
    assert [(r["region"], r["metric"]) for r in rows] == [(g, m) for g in REGIONS for m in ("dice", "hd95", "nsd")]
    for i, region in enumerate(REGIONS):
        expect = region_metrics(pred[i], gt[i], spacing, nsd_tolerance_mm=2.0, empty_policy="diagonal")
        got = {r["metric"]: r["value"] for r in rows if r["region"] == region}
        assert got == expect


def test_case_metrics_custom_region_names_and_count():
    pred, gt = _random_case(8)
    rows = case_metrics(pred[:2], gt[:2], SPACING, regions=("A", "B"))
    assert {r["region"] for r in rows} == {"A", "B"} and len(rows) == 6


def test_torch_and_numpy_agree_and_inputs_untouched():
    rng = np.random.default_rng(4)
    pred = np.stack([blob(rng, (16, 16, 16), 2, q) for q in (0.7, 0.6, 0.85)])
    gt = np.stack([blob(rng, (16, 16, 16), 2, q) for q in (0.7, 0.6, 0.85)])
    pred_copy, gt_copy = pred.copy(), gt.copy()
    ref = case_metrics(pred, gt, (1.0, 1.5, 0.8))
    t_pred, t_gt = torch.from_numpy(pred.copy()), torch.from_numpy(gt.copy()).to(torch.uint8)
    got = case_metrics(t_pred, t_gt, (1.0, 1.5, 0.8))
    assert got == ref
    assert np.array_equal(pred, pred_copy) and np.array_equal(gt, gt_copy)
    assert torch.equal(t_pred, torch.from_numpy(pred_copy)) and t_gt.dtype == torch.uint8
    assert case_metrics(pred.astype(np.float32), gt.astype(np.int64), (1.0, 1.5, 0.8)) == ref


def test_requires_grad_tensor_is_accepted():
    m = torch.zeros(1, 6, 6, 6, requires_grad=True)
    with torch.no_grad():
        m[0, 2:4, 2:4, 2:4] = 1.0
    rows = case_metrics(m, m.detach(), SPACING, regions=("WT",))
    assert {r["metric"]: r["value"] for r in rows} == {"dice": 1.0, "hd95": 0.0, "nsd": 1.0}


def test_bad_inputs_raise_one_line_config_errors():
    good = np.zeros((3, 6, 6, 6), dtype=bool)
    cases = [
        (lambda: case_metrics(good, good[:, :5], SPACING), "shapes differ"),
        (lambda: case_metrics(good[:2], good[:2], SPACING), "regions"),
        (lambda: case_metrics(good, good, SPACING, regions=("TC", "TC", "ET")), "regions"),
        (lambda: case_metrics(good[0], good[0], SPACING), "4 dimensions"),
        (lambda: case_metrics(good, good, (1.0, 0.0, 1.0)), "spacing"),
        (lambda: case_metrics(good, good, (1.0, -1.0, 1.0)), "spacing"),
        (lambda: case_metrics(good, good, (1.0, 1.0)), "spacing"),
        (lambda: case_metrics(good, good, SPACING, nsd_tolerance_mm=-1.0), "nsd_tolerance_mm"),
        (lambda: case_metrics(good, good, SPACING, nsd_tolerance_mm=math.nan), "nsd_tolerance_mm"),
        (lambda: case_metrics(good, good, SPACING, nsd_tolerance_mm="a"), "nsd_tolerance_mm"),
        (lambda: case_metrics(good, good, SPACING, empty_policy="ignore"), "empty_policy"),
        (lambda: case_metrics(np.full(good.shape, 0.5), good, SPACING), "boolean"),
        (lambda: case_metrics(good.tolist(), good, SPACING), "numpy array or torch tensor"),
        (lambda: case_metrics(good.astype(str), good, SPACING), "boolean"),
        (lambda: dice(good[0], good[0, :3]), "shapes differ"),
        (lambda: hd95(good[0], good[0], (1.0, 1.0, math.inf)), "spacing"),
        (lambda: nsd(good[0], good[0], SPACING, tolerance_mm=math.inf), "nsd_tolerance_mm"),
    ]
    for call, match in cases:
        with pytest.raises(ConfigError, match=match) as err:
            call()
        assert "\n" not in str(err.value)


def test_as_mask_passes_booleans_through():
    m = np.ones((2, 2, 2), dtype=bool)
    assert as_mask(m) is m
    assert as_mask(np.array([[[0, 1]]], dtype=np.uint8)).dtype == bool


def test_monai_would_return_nan_where_the_policy_does_not():
    """Documents the motivation: MONAI's Dice ignores empty ground truth as NaN; the policy gives a number."""
    z = torch.zeros(1, 1, 6, 6, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(compute_dice(z, z, include_background=True).item())
    assert dice(z[0, 0], z[0, 0]) == 1.0
