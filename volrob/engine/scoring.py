"""Scoring one preprocessed input the way every robustness result is scored: predict with the model's sliding
window, map the regions back to the source voxel grid, and compute the per-region metrics against the source
labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from volrob.data.preprocess import Preprocessed
from volrob.evaluation.empty_policy import EmptyPolicy
from volrob.evaluation.metrics import case_metrics
from volrob.inference.segment import predict_regions, to_source_grid


def score_on_source(predictor: torch.nn.Module, x: torch.Tensor, p: Preprocessed, gt: np.ndarray | torch.Tensor,
                    spacing: Sequence[float], device: torch.device, *, nsd_tolerance_mm: float = 1.0,
                    empty_policy: str | EmptyPolicy = "brats") -> list[dict[str, Any]]:
    """Tidy ``{region, metric, value}`` rows of one input ``(1, C, *spatial)`` on the preprocessed grid of ``p``."""
    regions = predict_regions(predictor, x[0], device)  # type: ignore[arg-type]
    on_source = to_source_grid(regions.float(), p, nearest=True) > 0.5
    return case_metrics(on_source, gt, spacing, nsd_tolerance_mm=nsd_tolerance_mm, empty_policy=empty_policy)
