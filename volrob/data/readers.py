"""Read and write medical volumes; every backend returns the same array, affine and spacing for the same file.

Arrays are in nibabel's voxel index order ``(i, j, k)``; the affine maps voxel indices to RAS world coordinates in
millimetres, as ``nibabel`` reports it. SimpleITK (``backend="sitk"``, chosen automatically for ``.mha``, ``.mhd``
and ``.nrrd``) gives arrays in ``(z, y, x)`` order and geometry in LPS: both are converted here. ITK's NIfTI reader
zero-fills truncated files and replaces NaN/Inf by 0, so for NIfTI the sitk backend also reads the stored voxels with
nibabel; both backends therefore reject the same files.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError
from numpy.typing import DTypeLike

from volrob.errors import ConfigError, DataError
from volrob.io import atomic_path

BACKENDS: tuple[str, ...] = ("nibabel", "sitk")
NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
SITK_ONLY_SUFFIXES: tuple[str, ...] = (".mha", ".mhd", ".nrrd")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
_READ_ERRORS = (OSError, EOFError, ValueError, RuntimeError, zlib.error, ImageFileError, HeaderDataError)


@dataclass
class Volume:
    """A 3D volume: voxel array ``(i, j, k)``, 4x4 voxel->RAS affine (float64) and voxel spacing in mm."""

    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


def file_suffix(path: str | Path) -> str:
    """Lower-case suffix of a medical image file, with ``.nii.gz`` kept whole."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm: the lengths of the affine's first three columns."""
    norms = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return (float(norms[0]), float(norms[1]), float(norms[2]))


def _pick_backend(path: Path, backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    suffix = file_suffix(path)
    if suffix in SITK_ONLY_SUFFIXES:
        return "sitk"
    if suffix not in NIFTI_SUFFIXES:
        supported = ", ".join(NIFTI_SUFFIXES + SITK_ONLY_SUFFIXES)
        raise DataError(f"unsupported file extension {suffix or '(none)'!r}; expected one of {supported}", path=path)
    return backend


def _load_nibabel(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)  # forces reading every byte, so truncated files fail here
    return np.asarray(data), np.asarray(img.affine, dtype=np.float64)


def _load_sitk(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    # ITK zero-fills a truncated NIfTI and silently replaces NaN/Inf voxels by 0: read the stored voxels with
    # nibabel too, so truncation fails and non-finite voxels are restored exactly as the nibabel backend sees them.
    stored = _load_nibabel(path)[0] if file_suffix(path) in NIFTI_SUFFIXES else None
    img = sitk.ReadImage(str(path))
    data = sitk.GetArrayFromImage(img)
    n = img.GetDimension()
    spatial = tuple(range(n - 1, -1, -1))
    vector = img.GetNumberOfComponentsPerPixel() > 1  # vector pixels: (z, y, x, c) -> (x, y, z, c)
    data = data.transpose(*spatial, n) if vector else data.transpose(*spatial)
    if stored is not None and np.issubdtype(stored.dtype, np.floating):
        if stored.size != data.size:
            raise DataError(f"SimpleITK reads shape {data.shape}, nibabel {stored.shape}", path=path)
        stored = stored.reshape(data.shape)
        bad = ~np.isfinite(stored)
        if bad.any():
            data = data.astype(np.result_type(data.dtype, stored.dtype))
            data[bad] = stored[bad]
    affine = np.eye(4)
    if n >= 3:
        direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(n, n)[:3, :3]
        spacing = np.asarray(img.GetSpacing(), dtype=np.float64)[:3]
        affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(spacing)
        affine[:3, 3] = _LPS_TO_RAS @ np.asarray(img.GetOrigin(), dtype=np.float64)[:3]
    return data, affine


def _reason(err: Exception) -> str:
    """One short line from a reader's exception (ITK messages carry source locations and object addresses)."""
    lines = [ln for ln in str(err).splitlines() if ln.strip() and not ln.startswith("Exception thrown in")]
    text = " ".join(re.sub(r"^(ITK ERROR|sitk::ERROR):( \w+\(0x[0-9a-f]+\):)?", "", ln).strip() for ln in lines)
    return ("…" + text[-200:] if len(text) > 200 else text) or "no details"


def load_raw(path: str | Path, *, backend: str = "nibabel") -> tuple[np.ndarray, np.ndarray]:
    """Stored array (index order ``(i, j, k, ...)``, trailing singleton axes beyond 3 dropped) and RAS affine."""
    path = Path(path)
    chosen = _pick_backend(path, backend)
    if not path.is_file():
        raise DataError("file does not exist", path=path)
    try:
        data, affine = _load_nibabel(path) if chosen == "nibabel" else _load_sitk(path)
    except _READ_ERRORS as err:
        raise DataError(f"unreadable or truncated image ({type(err).__name__}: {_reason(err)})", path=path) from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return data, affine


def _check_dims(data: np.ndarray, path: Path) -> None:
    if data.ndim not in (3, 4):
        raise DataError(f"expected a 3D image (or 4D with a channel), got shape {tuple(data.shape)}", path=path)


def _select(data: np.ndarray, channel: int | None, path: Path) -> np.ndarray:
    n_channels = 1 if data.ndim == 3 else data.shape[3]
    if channel is None:
        if data.ndim == 4:
            raise DataError(f"image is 4D with {n_channels} channels {tuple(data.shape)}; name a channel", path=path)
        return data
    if not isinstance(channel, (int, np.integer)) or isinstance(channel, bool) or not 0 <= channel < n_channels:
        raise DataError(f"channel {channel!r} out of range: image has {n_channels} channel(s)", path=path)
    return data if data.ndim == 3 else data[..., int(channel)]


def _nonfinite_error(array: np.ndarray, path: Path) -> None:
    if not np.issubdtype(array.dtype, np.floating):
        return
    n_nan = int(np.isnan(array).sum())
    n_inf = int(np.isinf(array).sum())
    if n_nan or n_inf:
        raise DataError(f"{n_nan} NaN and {n_inf} Inf voxels out of {array.size}", path=path)


def read_channels(
    path: str | Path,
    channels: Sequence[int | None],
    *,
    backend: str = "nibabel",
    dtype: DTypeLike = np.float32,
) -> list[Volume]:
    """Read a file once and return one 3D :class:`Volume` per requested channel (``None`` for a 3D file)."""
    path = Path(path)
    data, affine = load_raw(path, backend=backend)
    _check_dims(data, path)
    spacing = spacing_of(affine)
    out = []
    for ch in channels:
        sel = _select(data, ch, path)
        _nonfinite_error(sel, path)
        out.append(Volume(np.ascontiguousarray(sel, dtype=dtype), affine.copy(), spacing))
    return out


def read_image(
    path: str | Path, *, channel: int | None = None, backend: str = "nibabel", dtype: DTypeLike = np.float32
) -> Volume:
    """Read one 3D image (or one channel of a 4D file) as ``dtype``; bad files raise :class:`DataError`."""
    return read_channels(path, [channel], backend=backend, dtype=dtype)[0]


def read_label(path: str | Path, *, backend: str = "nibabel") -> Volume:
    """Read a 3D label map as an integer array; non-integer or non-finite values raise :class:`DataError`.

    Integer files keep their stored dtype; float-stored labels are converted to ``int32`` after checking that every
    value is a whole number.
    """
    path = Path(path)
    data, affine = load_raw(path, backend=backend)
    if data.ndim != 3:
        raise DataError(f"expected a 3D label map, got shape {tuple(data.shape)}", path=path)
    if np.issubdtype(data.dtype, np.integer):
        array = np.ascontiguousarray(data)
    elif np.issubdtype(data.dtype, np.floating):
        _nonfinite_error(data, path)
        fractional = int(np.count_nonzero(data != np.round(data)))
        if fractional:
            raise DataError(f"label map has {fractional} non-integer voxels", path=path)
        if data.size and (data.min() < np.iinfo(np.int32).min or data.max() > np.iinfo(np.int32).max):
            raise DataError("label values do not fit in int32", path=path)
        array = data.astype(np.int32)
    else:
        raise DataError(f"label map has unsupported data type {data.dtype}", path=path)
    return Volume(array, affine, spacing_of(affine))


def write_nifti(
    path: str | Path, array: np.ndarray, affine: np.ndarray, *, dtype: DTypeLike | None = None
) -> Path:
    """Write a 3D/4D array as NIfTI (``.nii`` or ``.nii.gz``) atomically, storing ``dtype`` exactly (no scaling).

    ``dtype`` defaults to the array's own (booleans are stored as uint8, 64-bit integers as int32 when they fit).
    Both the sform and qform carry ``affine``, so every reader sees the same geometry.
    """
    path = Path(path)
    if file_suffix(path) not in NIFTI_SUFFIXES:
        raise DataError(f"NIfTI output must end in .nii or .nii.gz, got {file_suffix(path) or '(none)'!r}", path=path)
    data = np.asarray(array)
    aff = np.asarray(affine, dtype=np.float64)
    if data.ndim not in (3, 4):
        raise DataError(f"can only write 3D or 4D arrays, got shape {tuple(data.shape)}", path=path)
    if aff.shape != (4, 4) or not np.isfinite(aff).all():
        raise DataError(f"affine must be a finite 4x4 matrix, got shape {aff.shape}", path=path)
    if dtype is None:
        dtype = np.uint8 if data.dtype == np.bool_ else data.dtype
        if np.dtype(dtype).kind in "iu" and np.dtype(dtype).itemsize == 8:
            info = np.iinfo(np.int32)
            if data.size and (data.min() < info.min or data.max() > info.max):
                raise DataError("64-bit integer values do not fit in int32; pass dtype explicitly", path=path)
            dtype = np.int32
    img = nib.Nifti1Image(data.astype(dtype, copy=False), aff, dtype=np.dtype(dtype))
    img.header.set_sform(aff, code="scanner")
    img.header.set_qform(aff, code="scanner")
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_slope_inter(1.0, 0.0)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path
