"""Tiny on-disk datasets in the three supported layouts, written with nibabel directly (independent of volrob)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SHAPE = (12, 14, 10)
# The affine BraTS files carry: 1 mm voxels, i and j flipped (LPS storage), origin at (0, 239, 0).
BRATS_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
MSD_AFFINE = np.array([[1.0, 0, 0, -5.5], [0, 1.0, 0, -6.5], [0, 0, 1.0, 3.0], [0, 0, 0, 1]])
MSD_MODALITIES = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}

WriteNii = Callable[..., Path]


def _write(path: Path, array: np.ndarray, affine: np.ndarray = BRATS_AFFINE, dtype: type | None = None) -> Path:
    data = np.asarray(array) if dtype is None else np.asarray(array).astype(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64)), str(path))
    return path


@pytest.fixture
def write_nii() -> WriteNii:
    """``write_nii(path, array, affine=BRATS_AFFINE, dtype=None) -> path``: save one NIfTI with nibabel."""
    return _write


def _image(rng: np.random.Generator) -> np.ndarray:
    vol = np.zeros(SHAPE, dtype=np.float32)
    vol[2:10, 2:12, 1:9] = rng.uniform(100.0, 1000.0, size=(8, 10, 8))
    return vol


def _label(rng: np.random.Generator, values: tuple[int, int, int]) -> np.ndarray:
    lab = np.zeros(SHAPE, dtype=np.uint8)
    lab[3:9, 3:11, 2:8] = values[1]  # oedema
    lab[4:8, 4:10, 3:7] = rng.choice(np.array([values[0], values[2]], dtype=np.uint8), size=(4, 6, 4))
    return lab


@pytest.fixture
def brats2021_root(tmp_path: Path) -> Path:
    """Four BraTS 2021 cases; BraTS2021_00005 has no segmentation (a validation-phase case)."""
    root = tmp_path / "BraTS2021_Training_Data"
    rng = np.random.default_rng(2021)
    for cid in ("BraTS2021_00000", "BraTS2021_00002", "BraTS2021_00003", "BraTS2021_00005"):
        for mod in ("t1", "t1ce", "t2", "flair"):
            _write(root / cid / f"{cid}_{mod}.nii.gz", _image(rng))
        if cid != "BraTS2021_00005":
            _write(root / cid / f"{cid}_seg.nii.gz", _label(rng, (1, 2, 4)))
    (root / "README.txt").write_text("not a case\n")
    (root / "notes").mkdir()
    return root


@pytest.fixture
def brats2023_root(tmp_path: Path) -> Path:
    """Three BraTS 2023 cases, one of them from the meningioma (BraTS-MEN) cohort."""
    root = tmp_path / "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData"
    rng = np.random.default_rng(2023)
    for cid in ("BraTS-GLI-00000-000", "BraTS-GLI-00002-000", "BraTS-MEN-00004-000"):
        for sfx in ("t1n", "t1c", "t2w", "t2f"):
            _write(root / cid / f"{cid}-{sfx}.nii.gz", _image(rng))
        _write(root / cid / f"{cid}-seg.nii.gz", _label(rng, (1, 2, 3)))
    return root


@pytest.fixture
def msd_root(tmp_path: Path) -> Path:
    """MSD Task01: three 4D training cases with labels, one test case, and macOS ``._`` junk files."""
    root = tmp_path / "Task01_BrainTumour"
    rng = np.random.default_rng(1)
    train = ("BRATS_001", "BRATS_002", "BRATS_003")
    for cid in train:
        _write(root / "imagesTr" / f"{cid}.nii.gz", np.stack([_image(rng) for _ in range(4)], axis=-1), MSD_AFFINE)
        _write(root / "labelsTr" / f"{cid}.nii.gz", _label(rng, (2, 1, 3)), MSD_AFFINE)
    _write(root / "imagesTs" / "BRATS_485.nii.gz", np.stack([_image(rng) for _ in range(4)], axis=-1), MSD_AFFINE)
    for junk in ("imagesTr/._BRATS_001.nii.gz", "labelsTr/._BRATS_001.nii.gz", "imagesTs/._BRATS_485.nii.gz"):
        (root / junk).write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    meta = {
        "name": "BRATS", "tensorImageSize": "4D", "modality": MSD_MODALITIES,
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
        "numTraining": len(train), "numTest": 1,
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in train],
        "test": ["./imagesTs/BRATS_485.nii.gz"],
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root
