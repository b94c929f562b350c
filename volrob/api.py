"""The small public API for auditors: wrap any segmenter, attack it by name, score it.

>>> predictor = make_predictor(my_network, roi_size=(96, 96, 96))       # any torch.nn.Module
>>> result = volrob.attacks.create("pgd", eps=8, steps=20)(predictor, x, target)
>>> table = score(predictor, x, result.x_adv, target_regions, spacing=(1, 1, 1))

Inputs ``x`` live in the attack space: each channel scaled to [0, 1] (``volrob.data.preprocess`` does it for
NIfTI data). ``mean``/``std`` is the normalisation your network expects on top of that (identity by default).
On CPU, :func:`retain_freed_memory` once per process makes every attack step faster (see
:mod:`volrob.utils.host_memory`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from volrob.checkpoint import load_checkpoint
from volrob.data.labels import logits_to_regions
from volrob.evaluation.metrics import case_metrics
from volrob.inference.predictor import Predictor, SlidingWindowConfig
from volrob.utils.host_memory import retain_freed_memory

__all__ = ["load_predictor", "make_predictor", "retain_freed_memory", "score", "segment"]


def make_predictor(network: nn.Module, *, roi_size: Sequence[int], in_channels: int = 4,
                   mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                   output_mode: str = "regions", **window: Any) -> Predictor:
    """Wrap ``network`` ((B, C, *roi) -> logits) with normalisation and sliding window; ``window`` keys as
    :class:`SlidingWindowConfig` (overlap, mode, sw_batch_size, stitch_device, gradient, amp)."""
    cfg = SlidingWindowConfig.from_dict({"roi_size": list(roi_size), **window})
    return Predictor(network.eval(), mean=list(mean or [0.0] * in_channels), std=list(std or [1.0] * in_channels),
                     window=cfg, output_mode=output_mode)


def load_predictor(checkpoint: str | Path, **window: Any) -> Predictor:
    """The predictor of a volrob checkpoint; ``window`` overrides its sliding-window settings."""
    ckpt = load_checkpoint(checkpoint)
    return ckpt.build_predictor(SlidingWindowConfig.from_dict({**ckpt.inference.to_dict(), **window}))


def segment(predictor: Predictor, x: torch.Tensor) -> torch.Tensor:
    """Boolean regions (B, 3, *spatial): TC, WT, ET."""
    with torch.no_grad():
        return logits_to_regions(predictor(x), predictor.output_mode)


def score(predictor: Predictor, x: torch.Tensor, x_adv: torch.Tensor, target_regions: torch.Tensor, *,
          spacing: Sequence[float] = (1.0, 1.0, 1.0), empty_policy: str = "brats") -> pd.DataFrame:
    """Clean and adversarial Dice / HD95 / NSD per sample and region, one row each."""
    rows = []
    clean, adv = segment(predictor, x).cpu(), segment(predictor, x_adv).cpu()
    gt = target_regions.bool().cpu()
    for i in range(x.shape[0]):
        for c, a in zip(case_metrics(clean[i], gt[i], spacing, empty_policy=empty_policy),
                        case_metrics(adv[i], gt[i], spacing, empty_policy=empty_policy), strict=True):
            rows.append({"sample": i, "region": c["region"], "metric": c["metric"], "clean": c["value"],
                         "adversarial": a["value"]})
    return pd.DataFrame(rows)
