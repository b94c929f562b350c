"""Readers: nibabel and SimpleITK agree on array, affine and spacing; every bad file is one clear error."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from volrob.data.readers import Volume, file_suffix, read_channels, read_image, read_label, spacing_of, write_nifti
from volrob.errors import ConfigError, DataError


def _affine(seed: int) -> np.ndarray:
    """A non-trivial affine: random rotation, anisotropic spacing, non-zero origin."""
    rng = np.random.default_rng(seed)
    rot = Rotation.random(random_state=seed).as_matrix()
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(rng.uniform(0.5, 3.0, size=3))
    aff[:3, 3] = rng.uniform(-120.0, 120.0, size=3)
    return aff


def _one_line(err: pytest.ExceptionInfo[BaseException], path: Path) -> str:
    text = str(err.value)
    assert "\n" not in text
    assert str(path) in text
    return text


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_backends_agree_on_rotated_anisotropic_files(tmp_path: Path, write_nii, seed: int) -> None:
    aff = _affine(seed)
    data = np.random.default_rng(seed).normal(size=(7, 9, 5)).astype(np.float32)
    path = write_nii(tmp_path / "a.nii.gz", data, aff)
    nb, it = read_image(path, backend="nibabel"), read_image(path, backend="sitk")
    assert nb.array.dtype == it.array.dtype == np.float32
    np.testing.assert_array_equal(nb.array, data)
    np.testing.assert_array_equal(it.array, data)
    np.testing.assert_allclose(nb.affine, aff, atol=1e-5)
    np.testing.assert_allclose(it.affine, nb.affine, atol=1e-5)
    np.testing.assert_allclose(it.spacing, nb.spacing, atol=1e-6)
    np.testing.assert_allclose(nb.spacing, np.linalg.norm(aff[:3, :3], axis=0), atol=1e-5)


def test_sitk_affine_matches_itk_physical_points(tmp_path: Path, write_nii) -> None:
    """Oracle: ITK's own index->LPS mapping, flipped to RAS, equals affine @ index."""
    path = write_nii(tmp_path / "a.nii.gz", np.zeros((6, 7, 8), np.float32), _affine(7))
    vol = read_image(path, backend="sitk")
    itk = sitk.ReadImage(str(path))
    for idx in [(0, 0, 0), (5, 0, 3), (2, 6, 7), (5, 6, 7)]:
        lps = np.array(itk.TransformIndexToPhysicalPoint(idx))
        ras = vol.affine @ np.array([*idx, 1.0])
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-5)


@pytest.mark.parametrize("backend", ["nibabel", "sitk"])
def test_4d_channel_selection(tmp_path: Path, write_nii, backend: str) -> None:
    data = np.random.default_rng(0).normal(size=(6, 7, 5, 4)).astype(np.float32)
    aff = _affine(4)
    path = write_nii(tmp_path / "BRATS_001.nii.gz", data, aff)
    for ch in range(4):
        vol = read_image(path, channel=ch, backend=backend)
        np.testing.assert_array_equal(vol.array, data[..., ch])
        np.testing.assert_allclose(vol.affine, aff, atol=1e-5)
    many = read_channels(path, [3, 0], backend=backend)
    np.testing.assert_array_equal(many[0].array, data[..., 3])
    np.testing.assert_array_equal(many[1].array, data[..., 0])
    with pytest.raises(DataError, match="4D with 4 channels") as err:
        read_image(path, backend=backend)
    _one_line(err, path)
    for bad in (4, -1):
        with pytest.raises(DataError, match="out of range") as err:
            read_image(path, channel=bad, backend=backend)
        _one_line(err, path)


def test_3d_file_is_its_own_channel_zero(tmp_path: Path, write_nii) -> None:
    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    path = write_nii(tmp_path / "a.nii", data)
    np.testing.assert_array_equal(read_image(path, channel=0).array, data)
    with pytest.raises(DataError, match="has 1 channel"):
        read_image(path, channel=1)


def test_trailing_singleton_axis_is_dropped(tmp_path: Path, write_nii) -> None:
    data = np.random.default_rng(0).normal(size=(4, 5, 6, 1)).astype(np.float32)
    path = write_nii(tmp_path / "a.nii.gz", data)
    for backend in ("nibabel", "sitk"):
        np.testing.assert_array_equal(read_image(path, backend=backend).array, data[..., 0])


@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".mhd"])
def test_sitk_only_formats_agree_with_nifti(tmp_path: Path, suffix: str) -> None:
    data = np.random.default_rng(5).normal(size=(6, 7, 5)).astype(np.float32)
    aff = _affine(11)
    write_nifti(tmp_path / "ref.nii.gz", data, aff)
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    img = sitk.GetImageFromArray(data.transpose(2, 1, 0).copy())  # sitk wants (z, y, x)
    img.SetSpacing(spacing.tolist())
    flip = np.diag([-1.0, -1.0, 1.0])
    img.SetDirection((flip @ aff[:3, :3] / spacing).ravel().tolist())
    img.SetOrigin((flip @ aff[:3, 3]).tolist())
    other = tmp_path / f"a{suffix}"
    sitk.WriteImage(img, str(other))
    vol = read_image(other)  # nibabel asked, sitk picked for this extension
    ref = read_image(tmp_path / "ref.nii.gz")
    np.testing.assert_array_equal(vol.array, data)
    np.testing.assert_allclose(vol.affine, aff, atol=1e-6)
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-5)
    np.testing.assert_allclose(vol.spacing, ref.spacing, atol=1e-5)


def test_sitk_vector_image_channels(tmp_path: Path) -> None:
    data = np.random.default_rng(2).normal(size=(5, 6, 4, 3)).astype(np.float32)
    img = sitk.GetImageFromArray(data.transpose(2, 1, 0, 3).copy(), isVector=True)
    sitk.WriteImage(img, str(tmp_path / "v.nrrd"))
    for ch in range(3):
        np.testing.assert_array_equal(read_image(tmp_path / "v.nrrd", channel=ch).array, data[..., ch])


@pytest.mark.parametrize("backend", ["nibabel", "sitk"])
def test_missing_file(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "absent_t1.nii.gz"
    with pytest.raises(DataError, match="does not exist") as err:
        read_image(path, backend=backend)
    _one_line(err, path)


@pytest.mark.parametrize("backend", ["nibabel", "sitk"])
@pytest.mark.parametrize("name", ["a.nii.gz", "a.nii"])
def test_truncated_file(tmp_path: Path, write_nii, backend: str, name: str) -> None:
    path = write_nii(tmp_path / name, np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(DataError, match="truncated") as err:
        read_image(path, backend=backend)
    _one_line(err, path)


@pytest.mark.parametrize("backend", ["nibabel", "sitk"])
@pytest.mark.parametrize("name", ["junk.nii.gz", "junk.nii", "junk.mha"])
def test_garbage_file(tmp_path: Path, backend: str, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"this is not an image\n" * 5)
    with pytest.raises(DataError, match="unreadable") as err:
        read_image(path, backend=backend)
    _one_line(err, path)


@pytest.mark.parametrize("backend", ["nibabel", "sitk"])
@pytest.mark.parametrize("shape", [(12, 14), (4, 5, 6, 2, 3)])
def test_wrong_dimensionality(tmp_path: Path, write_nii, backend: str, shape: tuple[int, ...]) -> None:
    path = write_nii(tmp_path / "a.nii.gz", np.ones(shape, np.float32))
    with pytest.raises(DataError, match=r"expected a 3D image \(or 4D with a channel\), got shape") as err:
        read_image(path, backend=backend)
    assert str(shape) in _one_line(err, path)


@pytest.mark.parametrize("backend", ["nibabel", "sitk"])
def test_non_finite_voxels_are_counted(tmp_path: Path, write_nii, backend: str) -> None:
    data = np.ones((4, 5, 6), np.float32)
    data[0, 0, :3] = np.nan
    data[1, 2, 3] = np.inf
    data[2, 2, 2] = -np.inf
    path = write_nii(tmp_path / "a.nii.gz", data)
    with pytest.raises(DataError, match="3 NaN and 2 Inf voxels") as err:
        read_image(path, backend=backend)
    _one_line(err, path)


def test_non_finite_only_in_other_channel_is_fine(tmp_path: Path, write_nii) -> None:
    data = np.ones((4, 5, 6, 2), np.float32)
    data[..., 1] = np.nan
    path = write_nii(tmp_path / "a.nii.gz", data)
    assert np.isfinite(read_image(path, channel=0).array).all()
    with pytest.raises(DataError, match="120 NaN"):
        read_image(path, channel=1)


@pytest.mark.parametrize("name", ["a.png", "a.nii.zip", "noext"])
def test_unsupported_extension(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    with pytest.raises(DataError, match="unsupported file extension") as err:
        read_image(path)
    _one_line(err, path)


def test_unknown_backend(tmp_path: Path, write_nii) -> None:
    path = write_nii(tmp_path / "a.nii.gz", np.ones((3, 3, 3), np.float32))
    with pytest.raises(ConfigError, match="backend must be one of"):
        read_image(path, backend="itk")


def test_integer_image_becomes_float32_with_scaling_applied(tmp_path: Path) -> None:
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(0.5, 10.0)
    nib.save(img, str(tmp_path / "a.nii.gz"))
    for backend in ("nibabel", "sitk"):
        vol = read_image(tmp_path / "a.nii.gz", backend=backend)
        assert vol.array.dtype == np.float32
        np.testing.assert_allclose(vol.array, data * 0.5 + 10.0)


@pytest.mark.parametrize("backend", ["nibabel", "sitk"])
def test_read_label_integer_and_float_storage(tmp_path: Path, write_nii, backend: str) -> None:
    lab = np.random.default_rng(0).choice([0, 1, 2, 4], size=(5, 6, 7)).astype(np.uint8)
    as_int = read_label(write_nii(tmp_path / "i.nii.gz", lab), backend=backend)
    as_float = read_label(write_nii(tmp_path / "f.nii.gz", lab, dtype=np.float32), backend=backend)
    assert np.issubdtype(as_int.array.dtype, np.integer)
    assert as_float.array.dtype == np.int32
    np.testing.assert_array_equal(as_int.array, lab)
    np.testing.assert_array_equal(as_float.array, lab)


@pytest.mark.parametrize("backend", ["nibabel", "sitk"])
def test_read_label_rejects_fractions_nan_and_4d(tmp_path: Path, write_nii, backend: str) -> None:
    lab = np.zeros((5, 6, 7), np.float32)
    lab[1, 1, 1], lab[2, 2, 2] = 0.5, 2.25
    path = write_nii(tmp_path / "frac.nii.gz", lab)
    with pytest.raises(DataError, match="2 non-integer voxels") as err:
        read_label(path, backend=backend)
    _one_line(err, path)
    lab[1, 1, 1], lab[2, 2, 2] = np.nan, 0.0
    path = write_nii(tmp_path / "nan.nii.gz", lab)
    with pytest.raises(DataError, match="1 NaN"):
        read_label(path, backend=backend)
    path = write_nii(tmp_path / "4d.nii.gz", np.zeros((3, 4, 5, 2), np.uint8))
    with pytest.raises(DataError, match="expected a 3D label map"):
        read_label(path, backend=backend)


@pytest.mark.parametrize("name", ["out.nii.gz", "out.nii"])
def test_write_nifti_round_trip_keeps_float32_and_affine(tmp_path: Path, name: str) -> None:
    data = np.random.default_rng(3).normal(size=(6, 5, 4)).astype(np.float32)
    aff = _affine(9)
    path = write_nifti(tmp_path / "sub" / name, data, aff)
    img = nib.load(str(path))
    assert img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), data)
    np.testing.assert_allclose(img.affine, aff, atol=1e-5)
    assert img.header.get_sform(coded=True)[1] > 0 and img.header.get_qform(coded=True)[1] > 0
    for backend in ("nibabel", "sitk"):
        np.testing.assert_array_equal(read_image(path, backend=backend).array, data)
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temporary file left behind


def test_write_nifti_dtypes(tmp_path: Path) -> None:
    lab = np.random.default_rng(0).integers(0, 4, size=(4, 4, 4))  # int64
    assert nib.load(str(write_nifti(tmp_path / "l.nii.gz", lab, np.eye(4)))).get_data_dtype() == np.int32
    mask = lab > 1
    assert nib.load(str(write_nifti(tmp_path / "m.nii.gz", mask, np.eye(4)))).get_data_dtype() == np.uint8
    out = write_nifti(tmp_path / "u.nii.gz", lab, np.eye(4), dtype=np.uint8)
    np.testing.assert_array_equal(read_label(out).array, lab)


def test_write_nifti_bad_input_keeps_existing_file(tmp_path: Path) -> None:
    target = write_nifti(tmp_path / "keep.nii.gz", np.ones((3, 3, 3), np.float32), np.eye(4))
    before = target.read_bytes()
    with pytest.raises(DataError, match="3D or 4D"):
        write_nifti(target, np.ones((3, 3), np.float32), np.eye(4))
    with pytest.raises(DataError, match="finite 4x4"):
        write_nifti(target, np.ones((3, 3, 3), np.float32), np.eye(3))
    with pytest.raises(DataError, match="must end in .nii"):
        write_nifti(tmp_path / "x.mha", np.ones((3, 3, 3), np.float32), np.eye(4))
    with pytest.raises(DataError, match="do not fit in int32"):
        write_nifti(target, np.full((3, 3, 3), 2**40), np.eye(4))
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.nii.gz"]


def test_small_helpers() -> None:
    assert file_suffix("a/B.NII.GZ") == ".nii.gz"
    assert file_suffix("x.nrrd") == ".nrrd"
    assert spacing_of(np.diag([2.0, -3.0, 0.5, 1.0])) == (2.0, 3.0, 0.5)
    vol = Volume(np.zeros((2, 3, 4), np.float32), np.eye(4), (1.0, 1.0, 1.0))
    assert vol.shape == (2, 3, 4)
