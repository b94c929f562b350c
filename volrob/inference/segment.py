"""Predict regions for a preprocessed case and map results back to the source voxel grid."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Invertd

from volrob.data.labels import logits_to_regions
from volrob.data.preprocess import Preprocessed
from volrob.inference.predictor import Predictor
from volrob.utils.transfer import to_device


def to_source_grid(values: torch.Tensor, p: Preprocessed, *, nearest: bool) -> np.ndarray:
    """Map ``values`` ``(K, *spatial)`` on the preprocessed grid of ``p`` back to the source voxel grid.

    Undoes the crop (zero padding), resampling and orientation; ``nearest`` for masks, linear for intensities.
    Without any of them (e.g. a MONAI bundle that only normalises) the grid is the source grid already.
    """
    if not p.spatial.transforms:
        return values.detach().cpu().float().numpy()
    data = MetaTensor(values.detach().cpu().float(), meta=dict(p.image.meta),
                      applied_operations=list(p.image.applied_operations))
    back = Invertd("out", p.spatial, orig_keys="image", nearest_interp=nearest)({"image": p.image, "out": data})
    return torch.as_tensor(back["out"]).numpy()


def predict_regions(predictor: Predictor, image: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Boolean regions ``(3, *spatial)`` for one preprocessed image ``(C, *spatial)`` (no gradient)."""
    with torch.no_grad():
        logits = predictor(to_device(image[None], device))
    return logits_to_regions(logits, predictor.output_mode)[0].cpu()
