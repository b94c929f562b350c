"""Segmentation metrics per region — Dice, HD95 (mm), normalised surface Dice — as tidy rows, never NaN.

Masks are boolean ``(D, H, W)`` arrays (numpy or torch; 0/1 integers or floats are accepted too); a case is a
stack ``(n_regions, D, H, W)``, by default the regions TC, WT, ET. Surface conventions follow MONAI (see
:mod:`volrob.evaluation.surface`); empty masks follow one :class:`~volrob.evaluation.empty_policy.EmptyPolicy`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from volrob.data.labels import REGIONS
from volrob.errors import ConfigError
from volrob.evaluation.empty_policy import EmptyPolicy, get_policy
from volrob.evaluation.surface import check_spacing, percentile_hausdorff, surface_dice, surface_distances

MaskLike = np.ndarray | torch.Tensor
METRIC_NAMES: tuple[str, ...] = ("dice", "hd95", "nsd")
HD_PERCENTILE = 95.0


def as_mask(x: Any, name: str = "mask", ndim: int | None = None) -> np.ndarray:
    """``x`` as a boolean numpy array (the input is never modified); non-binary values or a wrong rank raise."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise ConfigError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        raise ConfigError(f"{name} must have {ndim} dimensions, got shape {list(x.shape)}")
    if x.dtype == bool:
        return x
    if x.dtype.kind not in "biuf" or not np.isin(x, (0, 1)).all():
        raise ConfigError(f"{name} must be boolean (or hold only 0 and 1), got dtype {x.dtype} with other values")
    return x.astype(bool)


def _check_tolerance(tolerance_mm: float) -> float:
    try:
        tol = float(tolerance_mm)
    except (TypeError, ValueError):
        tol = math.nan
    if not (math.isfinite(tol) and tol >= 0):
        raise ConfigError(f"nsd_tolerance_mm must be a finite number >= 0, got {tolerance_mm!r}")
    return tol


def _pair(pred: MaskLike, gt: MaskLike) -> tuple[np.ndarray, np.ndarray]:
    p, g = as_mask(pred, "pred", 3), as_mask(gt, "gt", 3)
    if p.shape != g.shape:
        raise ConfigError(f"pred and gt shapes differ: {list(p.shape)} vs {list(g.shape)}")
    return p, g


def region_metrics(
    pred: MaskLike,
    gt: MaskLike,
    spacing: Sequence[float],
    *,
    nsd_tolerance_mm: float = 1.0,
    empty_policy: str | EmptyPolicy = "brats",
) -> dict[str, float]:
    """``{"dice", "hd95", "nsd"}`` for one region's masks ``(D, H, W)``; spacing in mm."""
    p, g = _pair(pred, gt)
    sp = check_spacing(spacing, 3)
    tol = _check_tolerance(nsd_tolerance_mm)
    policy = get_policy(empty_policy)
    pred_empty, gt_empty = not p.any(), not g.any()
    if pred_empty or gt_empty:
        return {
            m: float(policy.value(m, pred_empty=pred_empty, gt_empty=gt_empty, shape=p.shape, spacing=sp))
            for m in METRIC_NAMES
        }
    overlap = np.count_nonzero(p & g)
    d_pg, d_gp = surface_distances(p, g, sp)
    return {
        "dice": float(2.0 * overlap / (np.count_nonzero(p) + np.count_nonzero(g))),
        "hd95": percentile_hausdorff(d_pg, d_gp, HD_PERCENTILE),
        "nsd": surface_dice(d_pg, d_gp, tol),
    }


def dice(pred: MaskLike, gt: MaskLike, *, empty_policy: str | EmptyPolicy = "brats") -> float:
    """Dice ``2|P∩G| / (|P| + |G|)`` of two masks, with the empty-case policy."""
    p, g = _pair(pred, gt)
    policy = get_policy(empty_policy)
    fixed = policy.value("dice", pred_empty=not p.any(), gt_empty=not g.any(), shape=p.shape, spacing=(1.0,) * 3)
    if fixed is not None:
        return fixed
    return float(2.0 * np.count_nonzero(p & g) / (np.count_nonzero(p) + np.count_nonzero(g)))


def hd95(pred: MaskLike, gt: MaskLike, spacing: Sequence[float], *, empty_policy: str | EmptyPolicy = "brats") -> float:
    """95th-percentile Hausdorff distance in mm (MONAI's definition), with the empty-case policy."""
    return region_metrics(pred, gt, spacing, empty_policy=empty_policy)["hd95"]


def nsd(
    pred: MaskLike,
    gt: MaskLike,
    spacing: Sequence[float],
    tolerance_mm: float = 1.0,
    *,
    empty_policy: str | EmptyPolicy = "brats",
) -> float:
    """Normalised surface Dice at ``tolerance_mm`` (MONAI's definition), with the empty-case policy."""
    return region_metrics(pred, gt, spacing, nsd_tolerance_mm=tolerance_mm, empty_policy=empty_policy)["nsd"]


def case_metrics(
    pred_regions: MaskLike,
    gt_regions: MaskLike,
    spacing: Sequence[float],
    *,
    nsd_tolerance_mm: float = 1.0,
    empty_policy: str | EmptyPolicy = "brats",
    regions: Sequence[str] = REGIONS,
) -> list[dict[str, Any]]:
    """Tidy rows ``{"region", "metric", "value"}`` (metric in dice, hd95, nsd) for one case ``(R, D, H, W)``."""
    p, g = as_mask(pred_regions, "pred_regions", 4), as_mask(gt_regions, "gt_regions", 4)
    if p.shape != g.shape:
        raise ConfigError(f"pred_regions and gt_regions shapes differ: {list(p.shape)} vs {list(g.shape)}")
    names = list(regions)
    if len(names) != p.shape[0] or len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"regions {names} must be {p.shape[0]} distinct names, one per channel of the masks")
    sp = check_spacing(spacing, 3)
    tol = _check_tolerance(nsd_tolerance_mm)
    policy = get_policy(empty_policy)
    rows: list[dict[str, Any]] = []
    for i, region in enumerate(names):
        values = region_metrics(p[i], g[i], sp, nsd_tolerance_mm=tol, empty_policy=policy)
        rows.extend({"region": region, "metric": m, "value": float(values[m])} for m in METRIC_NAMES)
    return rows
