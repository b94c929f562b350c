"""Scoring regions per label convention: the BraTS 2024 glioma convention (NETC 1, SNFH 2, ET 3, RC 4; six regions
from the raw values; RC background for models), and the other conventions' TC, WT, ET unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volrob.data.labels import CONVENTIONS, REGIONS, canonical_to_regions, get_convention
from volrob.errors import DataError

B24 = get_convention("brats2024")


def test_brats2024_values_and_model_targets() -> None:
    raw = np.array([0, 1, 2, 3, 4]).reshape(1, 1, 5)
    assert B24.allowed == (0, 1, 2, 3, 4)
    assert B24.to_canonical(raw).ravel().tolist() == [0, 1, 2, 3, 0]  # NETC→NCR, SNFH→ED, ET→ET, RC→background
    assert B24.from_canonical(np.array([0, 1, 2, 3])).tolist() == [0, 1, 2, 3]
    assert B24.unknown_values(np.array([0, 4, 5])) == [5]


def test_brats2024_regions_from_raw_values() -> None:
    raw = np.array([0, 1, 2, 3, 4]).reshape(1, 1, 5)
    masks = B24.region_masks(raw)[:, 0, 0].astype(int).tolist()
    assert B24.region_names == ("ET", "NETC", "SNFH", "RC", "TC", "WT")
    assert masks == [[0, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1], [0, 1, 0, 1, 0],
                     [0, 1, 1, 1, 0]]
    with pytest.raises(DataError, match=r"label values \[7\]"):
        B24.region_masks(np.array([[[7]]]))


def test_brats2024_prediction_regions_read_the_label_map_the_prediction_stands_for() -> None:
    # voxels: background; TC only (NETC); WT only (SNFH); ET inside TC; ET predicted outside TC and WT
    tc = np.array([0, 1, 0, 1, 0], bool)
    wt = np.array([0, 1, 1, 1, 0], bool)
    et = np.array([0, 0, 0, 1, 1], bool)
    regions = np.stack([tc, wt, et])[:, None, None, :]
    got = B24.prediction_regions(regions)[:, 0, 0].astype(int).tolist()
    assert got == [[0, 0, 0, 1, 1], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 1, 1],
                   [0, 1, 1, 1, 1]]


@pytest.mark.parametrize("name", ["brats2021", "brats2023", "msd"])
def test_other_conventions_keep_tc_wt_et(name: str) -> None:
    conv = get_convention(name)
    assert conv.region_names == REGIONS and conv.canonical_regions and not conv.background
    regions = np.random.default_rng(0).random((3, 4, 4, 4)) > 0.5
    np.testing.assert_array_equal(conv.prediction_regions(regions), regions)  # the model's own masks, unchanged


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["brats2021", "brats2023", "msd"]), st.lists(st.integers(0, 3), min_size=8, max_size=8))
def test_raw_regions_equal_canonical_regions(name: str, classes: list[int]) -> None:
    conv = CONVENTIONS[name]
    raw = conv.from_canonical(np.array(classes).reshape(2, 2, 2))
    np.testing.assert_array_equal(conv.region_masks(raw), canonical_to_regions(conv.to_canonical(raw)))
