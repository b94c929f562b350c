"""Scoring one preprocessed input the way every robustness result is scored: predict with the model's sliding
window, map the regions back to the source voxel grid, and compute the run's metric set against the source labels,
on the scoring regions of the data's label convention."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from volrob.data.labels import REGIONS, LabelConvention
from volrob.data.preprocess import Preprocessed
from volrob.evaluation.empty_policy import EmptyPolicy
from volrob.evaluation.metric_set import MetricSet, resolve_metric_set
from volrob.inference.segment import predict_regions, to_source_grid


def run_metric_set(cfg: Any, convention: str) -> MetricSet:
    """The metric set of a run config (``metrics``, ``lesionwise``, ``empty_policy``, ``nsd_tolerance_mm``) for data
    of label ``convention`` (unset keys take the convention's defaults)."""
    return resolve_metric_set(convention, cfg.metrics, cfg.lesionwise, empty_policy=cfg.empty_policy,
                              nsd_tolerance_mm=cfg.nsd_tolerance_mm)


def score_on_source(predictor: torch.nn.Module, x: torch.Tensor, p: Preprocessed, gt: np.ndarray | torch.Tensor,
                    spacing: Sequence[float], device: torch.device, *, nsd_tolerance_mm: float = 1.0,
                    empty_policy: str | EmptyPolicy = "brats", metric_set: MetricSet | None = None,
                    convention: LabelConvention | None = None) -> list[dict[str, Any]]:
    """Tidy ``{region, metric, value}`` rows of one input ``(1, C, *spatial)`` on the preprocessed grid of ``p``.

    ``gt``: the scoring regions of ``convention`` on the source grid (TC, WT, ET when no convention is given);
    ``metric_set``: what to compute (default: dice, hd95, nsd with ``nsd_tolerance_mm`` and ``empty_policy``)."""
    if metric_set is None:
        policy = empty_policy.name if isinstance(empty_policy, EmptyPolicy) else empty_policy
        metric_set = MetricSet(empty_policy=policy, nsd_tolerance_mm=nsd_tolerance_mm)
    regions = predict_regions(predictor, x[0], device)  # type: ignore[arg-type]
    on_source = to_source_grid(regions.float(), p, nearest=True) > 0.5
    names = REGIONS if convention is None else convention.region_names
    pred = on_source if convention is None else convention.prediction_regions(on_source)
    return metric_set.score(pred, gt, spacing, names).rows
