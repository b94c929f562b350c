"""Segment one case end to end: preprocess, predict, and map the prediction back to the source voxel grid."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Invertd

from volrob.data.cases import CaseData
from volrob.data.labels import logits_to_regions
from volrob.data.preprocess import PreprocessConfig, preprocess
from volrob.inference.predictor import Predictor


def segment_case(predictor: Predictor, case: CaseData, pre: PreprocessConfig, output_mode: str,
                 device: torch.device) -> np.ndarray:
    """Boolean regions ``(3, i, j, k)`` on the case's own source grid (inverse of orientation/spacing/crop)."""
    p = preprocess(case.image, None, case.affine, pre)
    with torch.no_grad():
        logits = predictor(p.image.as_tensor()[None].to(device))
    regions = logits_to_regions(logits, output_mode)[0].cpu().float()
    pred = MetaTensor(regions, meta=dict(p.image.meta), applied_operations=list(p.image.applied_operations))
    back = Invertd("pred", p.spatial, orig_keys="image", nearest_interp=True)({"image": p.image, "pred": pred})
    out = torch.as_tensor(back["pred"]).numpy() > 0.5
    if out.shape[1:] != case.image.shape[1:]:
        raise RuntimeError(f"inverse preprocessing gave shape {out.shape[1:]}, expected {case.image.shape[1:]}")
    return out
