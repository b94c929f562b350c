"""nnunetv2's own predictor as the outside oracle for ``nnunet:FOLDER`` tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch


def nnunet_predictor(folder: Path, folds: tuple[int, ...]) -> Any:
    """nnU-Net's predictor as its command line sets it up (step 0.5, Gaussian, mirroring), on the CPU."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    pred = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                           perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                           verbose_preprocessing=False, allow_tqdm=False)
    pred.initialize_from_trained_model_folder(str(folder), use_folds=folds, checkpoint_name="checkpoint_final.pth")
    return pred


@contextlib.contextmanager
def float32_stitching() -> Iterator[None]:
    """nnU-Net's predictor with its float16 stitching buffers made float32 (its module's ``torch.half``), the only
    change; volrob stitches in float32."""
    import nnunetv2.inference.predict_from_raw_data as module

    class _Torch:
        half = torch.float32

        def __getattr__(self, name: str) -> Any:
            return getattr(torch, name)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "torch", _Torch())
        yield


def predict_files(pred: Any, files: list[Path], out: Path) -> tuple[np.ndarray, np.ndarray]:
    """nnU-Net reading one case's files and writing ``out.nii.gz`` and ``out.npz``: its label map (raw values) and
    probabilities (its channels), both in the files' voxel order."""
    import nibabel as nib

    out.parent.mkdir(parents=True, exist_ok=True)
    pred.predict_from_files_sequential([[str(f) for f in files]], [str(out)], save_probabilities=True,
                                       overwrite=True)
    seg = np.asarray(nib.load(str(out.parent / f"{out.name}.nii.gz")).dataobj)
    prob = np.load(out.parent / f"{out.name}.npz")["probabilities"].transpose(0, 3, 2, 1)  # SimpleITK -> voxels
    return seg, prob
