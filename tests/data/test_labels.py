"""Label conventions and the TC / WT / ET regions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from volrob.data.labels import (
    CONVENTIONS,
    canonical_to_regions,
    get_convention,
    logits_to_regions,
    out_channels_for,
    regions_to_canonical,
)
from volrob.errors import ConfigError, DataError

# Raw values of (background, NCR, ED, ET) in each convention, written out by hand from the datasets' documentation.
RAW = {"brats2021": (0, 1, 2, 4), "brats2023": (0, 1, 2, 3), "msd": (0, 2, 1, 3)}


@pytest.mark.parametrize("name", sorted(RAW))
def test_conventions_map_to_regions(name: str) -> None:
    conv = get_convention(name)
    bg, ncr, ed, et = RAW[name]
    raw = np.array([[[bg, ncr, ed, et]]])
    canon = conv.to_canonical(raw)
    np.testing.assert_array_equal(canon, [[[0, 1, 2, 3]]])
    regions = canonical_to_regions(canon)
    # TC = NCR + ET, WT = NCR + ED + ET, ET = ET
    np.testing.assert_array_equal(regions[:, 0, 0], [[0, 1, 0, 1], [0, 1, 1, 1], [0, 0, 0, 1]])
    np.testing.assert_array_equal(conv.from_canonical(canon), raw)


def test_unknown_label_value() -> None:
    with pytest.raises(DataError, match=r"label values \[3\] are not allowed by convention 'brats2021'"):
        get_convention("brats2021").to_canonical(np.array([0, 1, 3]))
    assert get_convention("brats2023").unknown_values(np.array([0, 4, 7, 1])) == [4, 7]


def test_unknown_convention() -> None:
    with pytest.raises(ConfigError, match="unknown label convention"):
        get_convention("brats2099")
    assert sorted(CONVENTIONS) == ["brats2021", "brats2023", "brats2024", "msd"]


def test_regions_round_trip_numpy_and_torch() -> None:
    rng = np.random.default_rng(0)
    canon = rng.integers(0, 4, size=(5, 6, 7)).astype(np.uint8)
    regions = canonical_to_regions(canon)
    assert regions.shape == (3, 5, 6, 7) and regions.dtype == bool
    assert (regions[1] >= regions[0]).all() and (regions[0] >= regions[2]).all()  # ET ⊆ TC ⊆ WT
    np.testing.assert_array_equal(regions_to_canonical(regions), canon)
    t = torch.from_numpy(canon)
    np.testing.assert_array_equal(canonical_to_regions(t).numpy(), regions)
    np.testing.assert_array_equal(canonical_to_regions(t[None, None]).numpy()[0], regions)
    np.testing.assert_array_equal(regions_to_canonical(torch.from_numpy(regions)).numpy(), canon)


def test_logits_to_regions_both_modes() -> None:
    logits = torch.full((1, 3, 2, 2, 2), -5.0)
    logits[0, 1, 0] = 5.0  # WT only in the first slab
    r = logits_to_regions(logits, "regions")
    assert r[0, 1, 0].all() and not r[0, 1, 1].any() and not r[0, 0].any()
    lab = torch.zeros((1, 4, 2, 2, 2))
    lab[0, 3, 0, 0, 0] = 9.0  # one ET voxel
    r = logits_to_regions(lab, "labels")
    assert r.shape == (1, 3, 2, 2, 2) and r[0, :, 0, 0, 0].all() and r.sum() == 3
    with pytest.raises(ConfigError, match="output mode"):
        logits_to_regions(lab, "voxels")
    assert out_channels_for("regions") == 3 and out_channels_for("labels") == 4
