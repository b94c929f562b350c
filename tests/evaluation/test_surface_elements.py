"""HD95 between area-weighted surface elements (the official BraTS 2023+ definition): the generated area table
against MONAI's copy of DeepMind's table, surface elements, areas and distances against the brute-force oracle in
tests/helpers/surfel_oracle.py, the area-weighted percentile against a plain loop, hand-built cases with known
values, and every bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import surfel_oracle as oracle
from helpers.masks import blob, box
from hypothesis import given, settings
from hypothesis import strategies as st

from volrob.errors import ConfigError
from volrob.evaluation.metrics import hd95 as voxel_centre_hd95
from volrob.evaluation.surface_elements import (
    area_percentile,
    hd_surface_elements,
    neighbour_codes,
    surface_element_distances,
)
from volrob.evaluation.surfel_areas import code_areas, corner_bit

SPACINGS = [(1.0, 1.0, 1.0), (0.7, 1.3, 2.9), (3.1, 0.4, 1.7), (1.0, 1.0, 5.0)]


@pytest.mark.parametrize("spacing", SPACINGS)
def test_area_table_matches_deepmind_table(spacing: tuple[float, float, float]) -> None:
    np.testing.assert_allclose(code_areas(spacing), oracle.monai_areas(spacing), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_area_table_hand_values(spacing: tuple[float, float, float]) -> None:
    s0, s1, s2 = spacing
    areas = code_areas(spacing)
    assert areas[0] == 0.0 and areas[255] == 0.0
    one_corner = math.sqrt((s1 * s2) ** 2 + (s0 * s2) ** 2 + (s0 * s1) ** 2) / 8  # triangle cutting off a corner
    for corner in [(0, 0, 0), (1, 0, 1), (1, 1, 1)]:
        assert areas[corner_bit(corner)] == pytest.approx(one_corner)
    half_cell = sum(corner_bit((1, b, c)) for b in (0, 1) for c in (0, 1))  # a flat square across axis 0
    assert areas[half_cell] == pytest.approx(s1 * s2)
    np.testing.assert_allclose(areas, areas[::-1])  # a code and its complement share their surface


def test_neighbour_codes_read_the_eight_voxels() -> None:
    mask = np.zeros((2, 2, 2), bool)
    mask[1, 0, 1] = True
    codes = neighbour_codes(mask)
    assert codes.shape == (3, 3, 3)
    assert codes[1, 1, 1] == corner_bit((1, 0, 1))  # the centre point sees the voxel at offset (1, 0, 1)
    assert codes[2, 1, 2] == corner_bit((0, 0, 0)) and codes[0, 0, 0] == 0


@pytest.mark.parametrize(("spacing", "k"), [((1.0, 1.0, 1.0), 1), ((1.0, 1.0, 1.0), 4), ((0.7, 1.3, 2.9), 1)])
def test_total_surface_area_of_boxes(spacing: tuple[float, float, float], k: int) -> None:
    m = box((k + 4,) * 3, (2, 2, 2), (k + 2,) * 3)
    areas = surface_element_distances(m, m, spacing).pred_areas
    s0, s1, s2 = spacing
    if k == 1:  # a single voxel: the octahedron through its six face centres
        assert areas.sum() == pytest.approx(math.sqrt((s1 * s2) ** 2 + (s0 * s2) ** 2 + (s0 * s1) ** 2))
    else:  # six flat faces, twelve bevelled edges, eight corner triangles
        assert areas.sum() == pytest.approx(6 * (k - 1) ** 2 + 12 * (k - 1) / math.sqrt(2) + math.sqrt(3))


def _pair(seed: int, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = blob(rng, shape, 1.2, 0.6)
    b = blob(rng, shape, 1.2, 0.6) if seed % 3 else np.roll(a, 1, axis=seed % 3)
    return a, b


@pytest.mark.parametrize("seed", range(8))
def test_elements_and_distances_match_brute_force(seed: int) -> None:
    a, b = _pair(seed, (9, 8, 7))  # blobs reach the image border: outside counts as background
    spacing = SPACINGS[seed % len(SPACINGS)]
    d = surface_element_distances(a, b, spacing)
    want_ab, area_a = oracle.directed(a, b, spacing)
    want_ba, area_b = oracle.directed(b, a, spacing)
    np.testing.assert_allclose(d.pred_to_gt, want_ab, rtol=0, atol=1e-9)
    np.testing.assert_allclose(d.gt_to_pred, want_ba, rtol=0, atol=1e-9)
    np.testing.assert_allclose(d.pred_areas, area_a, rtol=2e-6)
    np.testing.assert_allclose(d.gt_areas, area_b, rtol=2e-6)


@pytest.mark.parametrize("seed", range(8))
def test_hd95_matches_brute_force(seed: int) -> None:
    a, b = _pair(100 + seed, (10, 9, 8))
    spacing = SPACINGS[seed % len(SPACINGS)]
    got = hd_surface_elements(a, b, spacing, miss_mm=374.0)
    assert got == pytest.approx(oracle.hd(a, b, spacing, 374.0), abs=1e-9)
    assert hd_surface_elements(b, a, spacing, miss_mm=374.0) == got  # symmetric


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 9)), min_size=1, max_size=25),
       st.floats(0.0, 100.0))
def test_area_percentile_matches_a_plain_loop(pairs: list[tuple[int, int]], q: float) -> None:
    d = np.array([p[0] for p in pairs], float)
    a = np.array([p[1] for p in pairs], float)  # integer areas: every running share is computed exactly
    assert area_percentile(d, a, q) == oracle.weighted_percentile(d, a, q)


def test_area_percentile_hand_cases() -> None:
    d = np.arange(20, dtype=float)
    assert area_percentile(d, np.ones(20), 95.0) == 18.0  # 19 of 20 equal areas reach 95 %
    assert area_percentile(d[::-1], np.ones(20), 95.0) == 18.0  # order does not matter
    assert area_percentile(np.array([0.0, 5.0]), np.array([0.96, 0.04]), 95.0) == 0.0
    assert area_percentile(np.array([0.0, 5.0]), np.array([0.94, 0.06]), 95.0) == 5.0
    assert area_percentile(np.array([2.0, 7.0]), np.array([1.0, 1.0]), 100.0) == 7.0


@pytest.mark.parametrize("spacing", SPACINGS)
def test_hand_cases(spacing: tuple[float, float, float]) -> None:
    shape = (14, 14, 14)
    cube = box(shape, (4, 4, 4), (8, 8, 8))
    assert hd_surface_elements(cube, cube, spacing, miss_mm=374.0) == 0.0
    for axis in range(3):  # a 4-voxel cube moved by one voxel: every element is within one voxel, the far faces
        moved = np.roll(cube, 1, axis=axis)  # (over 5 % of the area) exactly one voxel away
        assert hd_surface_elements(cube, moved, spacing, miss_mm=374.0) == pytest.approx(spacing[axis])
    a = box(shape, (2, 5, 5), (3, 6, 6))
    b = box(shape, (5, 5, 5), (6, 6, 6))  # single voxels three apart along axis 0: half the corner points are 2
    assert hd_surface_elements(a, b, spacing, miss_mm=374.0) == pytest.approx(3 * spacing[0])  # and half 3 away
    assert voxel_centre_hd95(a, b, spacing) == pytest.approx(3 * spacing[0])


def test_the_two_definitions_differ_on_blobs() -> None:
    rng = np.random.default_rng(3)
    a, b = blob(rng, (20, 20, 20), 2.0, 0.7), blob(rng, (20, 20, 20), 2.0, 0.7)
    official = hd_surface_elements(a, b, (1.0, 1.0, 1.0), miss_mm=374.0)
    assert official == pytest.approx(oracle.hd(a, b, (1.0, 1.0, 1.0), 374.0))
    assert official == pytest.approx(math.sqrt(10)) and voxel_centre_hd95(a, b, (1.0, 1.0, 1.0)) == pytest.approx(4.0)


def test_empty_masks() -> None:
    empty, cube = np.zeros((6, 6, 6), bool), box((6, 6, 6), (1, 1, 1), (3, 3, 3))
    assert hd_surface_elements(empty, empty, (1, 1, 1), miss_mm=374.0) == 0.0
    assert hd_surface_elements(empty, cube, (1, 1, 1), miss_mm=374.0) == 374.0
    assert hd_surface_elements(cube, empty, (2, 2, 2), miss_mm=337.0) == 337.0


@pytest.mark.parametrize(("call", "match"), [
    (lambda: surface_element_distances(np.zeros((4, 4, 4), bool), np.ones((4, 4, 4), bool), (1, 1, 1)),
     "non-empty"),
    (lambda: surface_element_distances(np.ones((4, 4, 4), bool), np.ones((4, 4, 5), bool), (1, 1, 1)),
     "equal shape"),
    (lambda: surface_element_distances(np.ones((4, 4), bool), np.ones((4, 4), bool), (1, 1)), "3-D"),
    (lambda: surface_element_distances(np.ones((3, 3, 3), bool), np.ones((3, 3, 3), bool), (1, 0, 1)), "spacing"),
    (lambda: hd_surface_elements(np.ones((3, 3, 3), bool), np.ones((3, 3, 3), bool), (1, 1, 1), miss_mm=-1.0),
     "miss_mm"),
    (lambda: hd_surface_elements(np.ones((3, 3, 3), bool), np.ones((3, 3, 3), bool), (1, 1, 1),
                                 miss_mm=float("nan")), "miss_mm"),
    (lambda: hd_surface_elements(np.ones((3, 3, 3), bool), np.ones((3, 3, 4), bool), (1, 1, 1), miss_mm=1.0),
     "shapes differ"),
    (lambda: area_percentile(np.ones(3), np.ones(3), 101.0), "percentile"),
    (lambda: area_percentile(np.ones(3), np.ones(2), 95.0), "equally long"),
    (lambda: area_percentile(np.ones(0), np.ones(0), 95.0), "non-empty"),
    (lambda: code_areas((1.0, 1.0)), "spacing"),
    (lambda: code_areas((1.0, float("inf"), 1.0)), "spacing"),
])
def test_bad_inputs(call, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        call()
