"""BraTS lesion-wise Dice and HD95: hand-built volumes with known values, and an independent implementation written
here (whole-image steps in the order of the challenge's description, the brute-force surface-element HD of
tests/helpers/surfel_oracle.py) compared on random blob volumes; the per-challenge parameters; every bad input."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import surfel_oracle
from helpers.masks import box
from scipy import ndimage

from volrob.errors import ConfigError
from volrob.evaluation.challenges import CHALLENGES, Challenge, get_challenge
from volrob.evaluation.lesionwise import lesion_wise
from volrob.evaluation.surface_elements import hd_surface_elements

SHAPE = (40, 24, 24)
ONE = (1.0, 1.0, 1.0)


def cube(x0: int, size: int = 4, y0: int = 8, z0: int = 8) -> np.ndarray:
    return box(SHAPE, (x0, y0, z0), (x0 + size, y0 + size, z0 + size))


def test_challenge_table() -> None:
    assert {n: (c.dilation, c.volume_threshold_mm3, c.miss_penalty_mm) for n, c in CHALLENGES.items()} == {
        "gli": (3, 50.0, 374.0), "ssa": (3, 50.0, 374.0), "ped": (3, 50.0, 374.0), "men": (1, 50.0, 374.0),
        "met": (1, 2.0, 374.0), "gli2024": (3, 20.0, 337.0)}
    g24 = get_challenge("gli2024")
    assert g24.threshold_for("ET") == 10.0 and g24.threshold_for("WT") == 20.0 and g24.threshold_for("RC") == 20.0
    assert g24.dilation_for("NETC") == 5 and g24.dilation_for("RC") == 5 and g24.dilation_for("SNFH") == 3
    assert g24.merge_predictions and not get_challenge("gli").merge_predictions
    assert get_challenge("met").record()["connectivity"] == 26


def test_split_lesion_merges_by_dilation() -> None:
    gt = cube(4) | cube(11)  # two 4-voxel cubes with a 3-voxel gap: one lesion when dilated 3 times, two when once
    s = lesion_wise(gt, gt, ONE, "gli")
    assert (s.dice, s.hd95, s.counted, s.false_positives) == (1.0, 0.0, 1, ())
    assert len(s.lesions) == 1 and s.lesions[0].hits == (1, 2) and s.lesions[0].volume_mm3 == 128.0
    s = lesion_wise(gt, gt, ONE, "men")
    assert (s.dice, s.hd95, len(s.lesions), s.counted) == (1.0, 0.0, 2, 2)
    assert [lesion.hits for lesion in s.lesions] == [(1,), (2,)]


def test_two_far_lesions_one_shifted() -> None:
    gt = cube(4) | cube(26)
    pred = cube(4) | cube(27)  # the second moved by one voxel: Dice 2 * 48 / 128, HD95 one voxel
    s = lesion_wise(pred, gt, ONE, "gli")
    assert [(lesion.dice, lesion.hd95) for lesion in s.lesions] == [(1.0, 0.0), (0.75, 1.0)]
    assert s.dice == pytest.approx(0.875) and s.hd95 == pytest.approx(0.5)


def test_missed_lesion_and_false_positive() -> None:
    gt = cube(4) | cube(26)
    s = lesion_wise(cube(4), gt, ONE, "gli")
    assert s.lesions[1].hits == () and (s.lesions[1].dice, s.lesions[1].hd95) == (0.0, 374.0)
    assert (s.dice, s.hd95, s.missed) == (0.5, 187.0, 1)
    s = lesion_wise(cube(4) | cube(26), cube(4), ONE, "gli")  # a predicted component far from every lesion
    assert s.false_positives == (2,) and s.false_positive_volumes_mm3 == (64.0,)
    assert (s.dice, s.hd95) == (0.5, 187.0)
    s = lesion_wise(cube(4) | cube(26), cube(4), ONE, "gli2024")
    assert (s.dice, s.hd95) == (0.5, 168.5)  # the 2024 penalty


def test_near_prediction_is_a_hit_not_a_false_positive() -> None:
    gt, pred = cube(4), cube(10)  # 2-voxel gap: inside the lesion's dilated mask (3), no overlap
    s = lesion_wise(pred, gt, ONE, "gli")
    assert s.false_positives == () and s.lesions[0].hits == (1,) and s.lesions[0].dice == 0.0
    assert s.hd95 == pytest.approx(hd_surface_elements(pred, gt, ONE, miss_mm=374.0))
    far = lesion_wise(pred, gt, ONE, "men")  # dilation 1: out of reach, a miss plus a false positive
    assert (far.dice, far.hd95, far.false_positives) == (0.0, 374.0, (1,))


def test_lesion_below_threshold_is_left_out() -> None:
    gt = cube(4) | cube(26, size=3)  # 27 voxels: 27 mm³ at 1 mm, 216 mm³ at 2 mm
    s = lesion_wise(gt, gt, ONE, "gli")
    assert [lesion.counted for lesion in s.lesions] == [True, False] and (s.dice, s.hd95) == (1.0, 0.0)
    s = lesion_wise(cube(4), gt, ONE, "gli")  # missing it costs nothing either
    assert (s.dice, s.hd95, s.missed) == (1.0, 0.0, 0)
    s = lesion_wise(cube(4), gt, (2.0, 2.0, 2.0), "gli")
    assert s.lesions[1].volume_mm3 == 216.0 and (s.dice, s.hd95) == (0.5, 187.0)
    assert lesion_wise(cube(4), gt, ONE, "met").dice == 0.5  # threshold 2 mm³


def test_hits_of_a_small_lesion_are_not_false_positives() -> None:
    gt = cube(4, size=3)
    s = lesion_wise(gt, gt, ONE, "gli")
    assert s.counted == 0 and s.false_positives == () and (s.dice, s.hd95) == (1.0, 0.0)


def test_empty_volumes() -> None:
    empty = np.zeros(SHAPE, bool)
    assert (lambda s: (s.dice, s.hd95, s.lesions))(lesion_wise(empty, empty, ONE, "gli")) == (1.0, 0.0, ())
    s = lesion_wise(empty, cube(4), ONE, "gli")
    assert (s.dice, s.hd95, s.counted, s.missed) == (0.0, 374.0, 1, 1)
    s = lesion_wise(cube(4) | cube(26), empty, ONE, "gli")
    assert (s.dice, s.hd95, s.false_positives) == (0.0, 374.0, (1, 2))


def test_gli2024_merges_and_filters_predictions() -> None:
    empty = np.zeros(SHAPE, bool)
    speck = cube(20, size=2)  # 8 voxels: removed from a 2024 prediction (at most 20), a false positive in 2023
    assert (lesion_wise(speck, empty, ONE, "gli2024").dice, lesion_wise(speck, empty, ONE, "gli").dice) == (1.0, 0.0)
    two = cube(4) | cube(11)  # merged into one predicted lesion in 2024, two components in 2023
    assert lesion_wise(two, empty, ONE, "gli2024").false_positives == (1,)
    assert lesion_wise(two, empty, ONE, "gli").false_positives == (1, 2)
    small = box(SHAPE, (4, 4, 4), (7, 6, 6))  # 12 voxels: above the ET threshold (10), not above WT's (20)
    assert lesion_wise(small, small, ONE, "gli2024", "ET").counted == 1
    assert lesion_wise(small, small, ONE, "gli2024", "WT").counted == 0
    assert lesion_wise(empty, cube(4), ONE, "gli2024", "WT").hd95 == 337.0


def oracle(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, float, float], dilation: int, threshold: float,
           penalty: float) -> tuple[float, float, int, int]:
    """The lesion-wise scores computed step by step on whole images: (dice, hd95, counted lesions, false positives)."""
    full = np.ones((3, 3, 3), bool)
    struct = ndimage.generate_binary_structure(3, 2)
    gt_cc, n_gt = ndimage.label(gt, full)
    dilated_cc, n_dil = ndimage.label(ndimage.binary_dilation(gt, struct, iterations=dilation), full)
    lesion_map = np.zeros(gt.shape, int)
    for comp in range(1, n_gt + 1):  # each reference component joins the dilated component that holds it
        lesion_map[gt_cc == comp] = np.unique(dilated_cc[gt_cc == comp])[0]
    pred_cc, n_pred = ndimage.label(pred, full)
    hits_all: set[int] = set()
    dice_sum, hd_sum, counted = 0.0, 0.0, 0
    for lesion_id in range(1, n_dil + 1):
        lesion = lesion_map == lesion_id
        reach = ndimage.binary_dilation(lesion, struct, iterations=dilation)
        hits = set(np.unique(pred_cc[reach]).tolist()) - {0}
        hits_all |= hits
        union = np.isin(pred_cc, list(hits)) if hits else np.zeros_like(pred)
        d = 2 * (lesion & union).sum() / (lesion.sum() + union.sum())
        h = surfel_oracle.hd(union, lesion, spacing, penalty)
        if lesion.sum() * np.prod(spacing) > threshold:
            dice_sum, hd_sum, counted = dice_sum + d, hd_sum + h, counted + 1
    fps = n_pred - len(hits_all)
    if counted + fps == 0:
        return 1.0, 0.0, 0, 0
    return dice_sum / (counted + fps), (hd_sum + penalty * fps) / (counted + fps), counted, fps


def random_lesions(rng: np.random.Generator, shape: tuple[int, int, int], n: int, largest: int = 4) -> np.ndarray:
    """``n`` random boxes with sides of 1 to ``largest`` voxels."""
    m = np.zeros(shape, bool)
    for _ in range(n):
        size = rng.integers(1, largest + 1, size=3)
        lo = [int(rng.integers(0, s - k + 1)) for s, k in zip(shape, size, strict=True)]
        m[tuple(slice(a, a + k) for a, k in zip(lo, size, strict=True))] = True
    return m


@pytest.mark.parametrize("seed", [0, 1, 2, 4])  # between them: merged lesions, misses, false positives, left-outs
def test_matches_independent_implementation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (30, 26, 22)
    gt = random_lesions(rng, shape, 7)
    pred = np.roll(gt, int(rng.integers(-1, 2)), axis=int(rng.integers(0, 3)))
    pred &= ~random_lesions(rng, shape, 3, 8)  # cut some, drop a third of the components, add some
    comps, n = ndimage.label(pred, np.ones((3, 3, 3), bool))
    pred = np.isin(comps, np.flatnonzero(rng.random(n) > 1 / 3) + 1) | random_lesions(rng, shape, 2)
    spacing = [(1.0, 1.0, 1.0), (1.2, 0.9, 2.0)][seed % 2]
    for name, threshold in (("gli", 50.0), ("gli", 12.5), ("met", 2.0)):
        ch = get_challenge(name)
        want = oracle(pred, gt, spacing, ch.dilation, threshold, ch.miss_penalty_mm)
        got = lesion_wise(pred, gt, spacing, Challenge(name, "", ch.dilation, threshold, ch.miss_penalty_mm))
        assert (got.dice, got.hd95) == pytest.approx(want[:2], abs=1e-9)
        assert (got.counted, len(got.false_positives)) == want[2:]
    assert lesion_wise(pred, gt, spacing, "met") == lesion_wise(pred, gt, spacing, get_challenge("met"))


@pytest.mark.parametrize(("args", "match"), [
    ((np.zeros((4, 4, 4), bool), np.zeros((4, 4, 5), bool), ONE, "gli"), "shapes differ"),
    ((np.zeros((4, 4), bool), np.zeros((4, 4), bool), ONE, "gli"), "3 dimensions"),
    ((np.full((4, 4, 4), 2), np.zeros((4, 4, 4), bool), ONE, "gli"), "boolean"),
    ((np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool), (1.0, -1.0, 1.0), "gli"), "spacing"),
    ((np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool), ONE, "gbm"), "unknown challenge"),
])
def test_bad_inputs(args: tuple, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        lesion_wise(*args)
