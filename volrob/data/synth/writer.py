"""Write a synthetic case as a BraTS-2021 case folder of NIfTI files (atomically, one file at a time)."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

from volrob.data.manifest import Case, ImageRef, sha256_file
from volrob.data.synth.case import SynthCase
from volrob.io import atomic_write_bytes


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Save ``data`` with ``affine`` (qform and sform, millimetres) to the ``.nii.gz`` ``path`` atomically.

    The gzip stream carries no file name and no time stamp, so equal arrays give byte-identical files.
    """
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    atomic_write_bytes(path, gzip.compress(img.to_bytes(), compresslevel=1, mtime=0))
    return path


def write_case(case: SynthCase, root: Path, split: str) -> Case:
    """Write ``root/<id>/<id>_{t1,t1ce,t2,flair,seg}.nii.gz``; returns the manifest entry (paths relative)."""
    folder = Path(case.id)
    images: dict[str, ImageRef] = {}
    hashes: dict[str, str] = {}
    for name, volume in case.images.items():
        rel = folder / f"{case.id}_{name}.nii.gz"
        hashes[name] = sha256_file(write_nifti(root / rel, volume.astype(np.float32), case.affine))
        images[name] = ImageRef(rel.as_posix())
    label = folder / f"{case.id}_seg.nii.gz"
    hashes["label"] = sha256_file(write_nifti(root / label, case.seg.astype(np.uint8), case.affine))
    return Case(case.id, split, images, label.as_posix(), "brats2021", hashes)
