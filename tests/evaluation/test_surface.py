"""Surface voxels, HD95 and NSD: hand-computed cases, properties, and MONAI as an independent oracle."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from helpers.masks import blob, box
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.metrics import compute_hausdorff_distance, compute_surface_dice

from volrob.errors import ConfigError
from volrob.evaluation.metrics import hd95, nsd, region_metrics
from volrob.evaluation.surface import (
    check_spacing,
    percentile_hausdorff,
    surface_dice,
    surface_distances,
    surface_voxels,
)


def test_surface_of_cube_is_its_shell():
    cube = box((20, 20, 20), (5, 5, 5), (15, 15, 15))
    surf = surface_voxels(cube)
    assert surf.sum() == 10**3 - 8**3
    assert not surf[6:14, 6:14, 6:14].any() and surf[5, 10, 10] and surf[14, 10, 10]


def test_mask_touching_image_border_has_surface_there():
    full = np.ones((4, 5, 6), dtype=bool)
    surf = surface_voxels(full)
    assert surf.sum() == 4 * 5 * 6 - 2 * 3 * 4
    assert surf[0].all() and surf[:, 0].all() and surf[:, :, -1].all()


def test_thin_plate_is_all_surface():
    plate = box((8, 8, 8), (3, 1, 1), (4, 7, 7))
    assert np.array_equal(surface_voxels(plate), plate)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.3, 2.5)])
def test_hd95_of_shifted_cubes_is_shift_in_mm(axis, k, spacing):
    lo, hi = [6, 6, 6], [16, 16, 16]
    a = box((30, 30, 30), lo, hi)
    lo[axis] += k
    hi[axis] += k
    b = box((30, 30, 30), lo, hi)
    assert hd95(a, b, spacing) == pytest.approx(k * spacing[axis], rel=1e-12)
    assert hd95(b, a, spacing) == pytest.approx(k * spacing[axis], rel=1e-12)


def test_single_voxel_masks():
    a = box((10, 10, 10), (2, 3, 4), (3, 4, 5))
    b = box((10, 10, 10), (5, 7, 4), (6, 8, 5))
    spacing = (2.0, 0.5, 1.0)
    dist = math.hypot(3 * 2.0, 4 * 0.5)
    r = region_metrics(a, b, spacing, nsd_tolerance_mm=dist - 0.01)
    assert r == {"dice": 0.0, "hd95": pytest.approx(dist), "nsd": 0.0}
    assert nsd(a, b, spacing, tolerance_mm=dist + 0.01) == 1.0
    assert region_metrics(a, a, spacing) == {"dice": 1.0, "hd95": 0.0, "nsd": 1.0}


def test_distance_exactly_at_tolerance_counts_as_within():
    a = box((10, 10, 10), (2, 2, 2), (3, 8, 8))
    b = box((10, 10, 10), (5, 2, 2), (6, 8, 8))
    assert nsd(a, b, (0.1, 1.0, 1.0), tolerance_mm=0.3) == 1.0
    assert nsd(a, b, (0.1, 1.0, 1.0), tolerance_mm=0.29) == 0.0


def test_nsd_identical_masks_is_one():
    rng = np.random.default_rng(3)
    a = blob(rng, (24, 24, 24), 3, 0.7)
    assert nsd(a, a, (1.0, 2.0, 0.5), tolerance_mm=0.0) == 1.0


def test_nsd_known_fraction_with_plates():
    # pred: one plate; gt: the same plate plus a second one 10 voxels away (every voxel of a plate is surface).
    shape = (20, 12, 12)
    pred = box(shape, (4, 2, 2), (5, 10, 10))
    gt = pred | box(shape, (14, 2, 2), (15, 10, 10))
    # pred->gt: 64 voxels at 0; gt->pred: 64 at 0 and 64 at 10 voxels. Within 1 mm: 128 of 192.
    assert nsd(pred, gt, (1.0, 1.0, 1.0), tolerance_mm=1.0) == pytest.approx(2 / 3)
    assert nsd(pred, gt, (1.0, 1.0, 1.0), tolerance_mm=10.0) == 1.0
    assert nsd(pred, gt, (0.09, 1.0, 1.0), tolerance_mm=1.0) == 1.0


def test_nsd_of_shifted_plates_depends_on_tolerance_in_mm():
    a = box((12, 10, 10), (3, 2, 2), (4, 8, 8))
    b = box((12, 10, 10), (5, 2, 2), (6, 8, 8))
    assert nsd(a, b, (1.0, 1.0, 1.0)) == 0.0
    assert nsd(a, b, (0.4, 1.0, 1.0)) == 1.0
    assert nsd(a, b, (1.0, 1.0, 1.0), tolerance_mm=2.0) == 1.0


def test_hd95_is_directed_maximum_not_pooled_percentile():
    d_ab = np.zeros(100)
    d_ba = np.r_[np.zeros(92), np.full(8, 7.0)]
    assert percentile_hausdorff(d_ab, d_ba) == pytest.approx(7.0)
    assert np.percentile(np.r_[d_ab, d_ba], 95) == 0.0  # the pooled definition would hide the outlier surface


def _monai(a, b, spacing, tol):
    ta, tb = torch.from_numpy(a)[None, None].float(), torch.from_numpy(b)[None, None].float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = compute_hausdorff_distance(ta, tb, include_background=True, percentile=95, spacing=list(spacing))
        s = compute_surface_dice(ta, tb, [tol], include_background=True, spacing=list(spacing))
    return h.item(), s.item()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.0, 0.7, 2.5), (0.5, 1.2, 1.9)])
def test_matches_monai_on_random_blobs(seed, spacing):
    rng = np.random.default_rng(seed)
    shape = (30, 32, 28)
    gt = blob(rng, shape, 3.5, 0.8)
    pred = gt ^ blob(rng, shape, 2.0, 0.96)  # perturbed copy: holes, bumps and islands
    other = blob(rng, shape, 3.5, 0.85)  # unrelated shape: large distances
    for p in (pred, other):
        h_ref, s_ref = _monai(p, gt, spacing, 1.5)
        r = region_metrics(p, gt, spacing, nsd_tolerance_mm=1.5)
        assert r["hd95"] == pytest.approx(h_ref, rel=1e-5)
        assert r["nsd"] == pytest.approx(s_ref, rel=1e-5)


small_masks = st.integers(0, 2**32 - 1).map(
    lambda s: tuple(blob(np.random.default_rng(s), (14, 12, 10), 1.5, q) for q in (0.75, 0.8))
)


@settings(max_examples=25, deadline=None)
@given(masks=small_masks, spacing=st.tuples(*[st.floats(0.3, 3.0)] * 3), tol=st.floats(0.0, 5.0))
def test_properties_symmetry_and_bounds(masks, spacing, tol):
    a, b = masks
    r_ab = region_metrics(a, b, spacing, nsd_tolerance_mm=tol)
    r_ba = region_metrics(b, a, spacing, nsd_tolerance_mm=tol)
    assert r_ab["hd95"] == pytest.approx(r_ba["hd95"])
    assert r_ab["nsd"] == pytest.approx(r_ba["nsd"])
    assert 0.0 <= r_ab["nsd"] <= 1.0 and r_ab["hd95"] >= 0.0
    d_ab, d_ba = surface_distances(a, b, spacing)
    assert r_ab["hd95"] <= max(d_ab.max(), d_ba.max()) + 1e-12


def test_surface_distances_do_not_depend_on_padding():
    rng = np.random.default_rng(5)
    a, b = blob(rng, (16, 16, 16), 2, 0.8), blob(rng, (16, 16, 16), 2, 0.8)
    pad = ((7, 3), (0, 9), (4, 4))
    # padding moves the image border away, so compare masks that do not touch it
    inner = (slice(1, -1),) * 3
    a2, b2 = np.zeros_like(a), np.zeros_like(b)
    a2[inner], b2[inner] = a[inner], b[inner]
    d1 = surface_distances(a2, b2, (1.0, 2.0, 0.5))
    d2 = surface_distances(np.pad(a2, pad), np.pad(b2, pad), (1.0, 2.0, 0.5))
    assert np.allclose(np.sort(d1[0]), np.sort(d2[0])) and np.allclose(np.sort(d1[1]), np.sort(d2[1]))


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (1.0, 0.0, 1.0), (1.0, -2.0, 1.0), (1.0, math.nan, 1.0),
                                     (1.0, math.inf, 1.0), "abc", None, (1.0, "x", 2.0)])
def test_check_spacing_rejects(spacing):
    with pytest.raises(ConfigError, match="spacing"):
        check_spacing(spacing)


def test_surface_functions_reject_bad_input():
    a = box((6, 6, 6), (1, 1, 1), (3, 3, 3))
    with pytest.raises(ConfigError, match="shapes differ"):
        surface_distances(a, a[:-1], (1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="non-empty"):
        surface_distances(a, np.zeros_like(a), (1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="percentile"):
        percentile_hausdorff(np.ones(3), np.ones(3), 101.0)
    with pytest.raises(ConfigError, match="non-empty"):
        percentile_hausdorff(np.ones(3), np.ones(0))
    for tol in (-1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="tolerance"):
            surface_dice(np.ones(3), np.ones(3), tol)
    with pytest.raises(ConfigError, match="surface voxel"):
        surface_dice(np.ones(0), np.ones(0), 1.0)
