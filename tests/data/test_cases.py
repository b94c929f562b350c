"""load_case: channel order, canonical labels, geometry, and a DataError naming the file for every bad case."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from volrob.data.cases import CaseData, find_case, load_case
from volrob.data.layouts import build_manifest
from volrob.data.manifest import MODALITIES, Manifest
from volrob.errors import DataError

CASE = "BraTS2021_00000"


def _nib(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


def test_brats2021_case(brats2021_root: Path) -> None:
    m = build_manifest(brats2021_root, "brats2021")
    data = load_case(m, CASE)
    assert isinstance(data, CaseData) and data.id == CASE
    assert data.image.dtype == np.float32 and data.image.shape == (4, 12, 14, 10)
    for i, mod in enumerate(MODALITIES):
        np.testing.assert_array_equal(data.image[i], _nib(brats2021_root / CASE / f"{CASE}_{mod}.nii.gz"))
        assert data.paths[mod] == brats2021_root / CASE / f"{CASE}_{mod}.nii.gz"
    raw = _nib(brats2021_root / CASE / f"{CASE}_seg.nii.gz")
    assert data.label is not None and data.label.dtype == np.uint8 and data.label.shape == (12, 14, 10)
    # BraTS 2021 raw 1 NCR, 2 ED, 4 ET -> canonical 1 NCR, 2 ED, 3 ET
    expected = np.select([raw == 1, raw == 2, raw == 4], [1, 2, 3], 0)
    np.testing.assert_array_equal(data.label, expected)
    assert set(np.unique(data.label)) == {0, 1, 2, 3}
    np.testing.assert_allclose(data.affine, nib.load(str(data.paths["t1"])).affine)
    assert data.spacing == (1.0, 1.0, 1.0)
    assert data.paths["label"] == brats2021_root / CASE / f"{CASE}_seg.nii.gz"


def test_channel_order_follows_manifest_modalities(brats2021_root: Path) -> None:
    m = build_manifest(brats2021_root, "brats2021")
    m.modalities = ("flair", "t1")
    for c in m.cases:
        c.images = {k: c.images[k] for k in m.modalities}
    data = load_case(m, m.cases[0])
    np.testing.assert_array_equal(data.image[0], _nib(brats2021_root / CASE / f"{CASE}_flair.nii.gz"))
    np.testing.assert_array_equal(data.image[1], _nib(brats2021_root / CASE / f"{CASE}_t1.nii.gz"))


def test_unlabelled_case(brats2021_root: Path) -> None:
    data = load_case(build_manifest(brats2021_root, "brats2021"), "BraTS2021_00005")
    assert data.label is None and "label" not in data.paths


def test_msd_case_channels_and_labels(msd_root: Path) -> None:
    m = build_manifest(msd_root, "msd")
    data = load_case(m, "BRATS_001")
    raw = _nib(msd_root / "imagesTr" / "BRATS_001.nii.gz")  # channels: FLAIR, T1w, t1gd, T2w
    for i, ch in enumerate((1, 2, 3, 0)):  # manifest order t1, t1ce, t2, flair
        np.testing.assert_array_equal(data.image[i], raw[..., ch])
    lab = _nib(msd_root / "labelsTr" / "BRATS_001.nii.gz")  # MSD 1 oedema, 2 non-enhancing, 3 enhancing
    np.testing.assert_array_equal(data.label, np.select([lab == 1, lab == 2, lab == 3], [2, 1, 3], 0))
    assert load_case(m, "BRATS_485").label is None


def test_brats2023_case_and_backends_agree(brats2023_root: Path) -> None:
    m = build_manifest(brats2023_root, "brats2023")
    a = load_case(m, "BraTS-MEN-00004-000", backend="nibabel")
    b = load_case(m, "BraTS-MEN-00004-000", backend="sitk", verify_hashes=True)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-6)
    raw = _nib(brats2023_root / "BraTS-MEN-00004-000" / "BraTS-MEN-00004-000-seg.nii.gz")
    np.testing.assert_array_equal(a.label, raw)  # BraTS 2023 values already canonical


def _raises_naming(m: Manifest, path: Path, match: str, *, verify_hashes: bool = False) -> None:
    with pytest.raises(DataError, match=match) as err:
        load_case(m, CASE, verify_hashes=verify_hashes)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and "\n" not in text


def test_errors_name_the_file(brats2021_root: Path, write_nii) -> None:
    m = build_manifest(brats2021_root, "brats2021", hash_files=True)
    folder = brats2021_root / CASE
    good = {mod: (folder / f"{CASE}_{mod}.nii.gz").read_bytes() for mod in (*MODALITIES, "seg")}

    def restore() -> None:
        for mod, raw in good.items():
            (folder / f"{CASE}_{mod}.nii.gz").write_bytes(raw)

    t2 = folder / f"{CASE}_t2.nii.gz"
    write_nii(t2, np.ones((12, 14, 11), np.float32))
    _raises_naming(m, t2, "t2 shape")
    restore()
    shifted = np.array([[-1.0, 0, 0, 1.0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    write_nii(t2, np.ones((12, 14, 10), np.float32), shifted)
    _raises_naming(m, t2, "t2 affine differs from t1 affine")
    restore()
    bad = np.ones((12, 14, 10), np.float32)
    bad[3, 3, 3] = np.inf
    write_nii(t2, bad)
    _raises_naming(m, t2, "0 NaN and 1 Inf")
    restore()
    seg = folder / f"{CASE}_seg.nii.gz"
    write_nii(seg, np.full((12, 14, 10), 3, np.uint8))
    _raises_naming(m, seg, r"label values \[3\] are not allowed")
    restore()
    t2.unlink()
    _raises_naming(m, t2, "file does not exist")
    restore()
    t2.write_bytes(good["t2"][: len(good["t2"]) // 2])
    _raises_naming(m, t2, "truncated")
    restore()
    load_case(m, CASE, verify_hashes=True)  # restored files load cleanly and match their hashes
    write_nii(t2, np.zeros((12, 14, 10), np.float32))
    load_case(m, CASE)  # hashes are not checked unless asked
    _raises_naming(m, t2, "sha256 of t2 is", verify_hashes=True)


def test_unknown_case_id(brats2021_root: Path, tmp_path: Path) -> None:
    m = build_manifest(brats2021_root, "brats2021")
    m.save(tmp_path / "m.json")
    with pytest.raises(DataError, match="no case 'BraTS2021_99999'") as err:
        find_case(m, "BraTS2021_99999")
    assert str(tmp_path / "m.json") in str(err.value)
