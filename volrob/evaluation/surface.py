"""Surface voxels and surface distances in millimetres, with the conventions MONAI's metrics use.

- A mask's surface is the mask minus its binary erosion by the 6-connected cross (scipy's default structure);
  voxels outside the image count as background, so a mask touching the image border has a surface there.
- The distance of a surface voxel of A to B is the exact Euclidean distance (mm, anisotropic spacing) from its
  centre to the nearest surface-voxel centre of B, from a distance transform over the union's bounding box.
- HD_p is ``max(percentile_p(d(pred -> gt)), percentile_p(d(gt -> pred)))``: the larger of the two *directed*
  percentiles (linear interpolation), not the percentile of the pooled distances.
- NSD at tolerance tau is the fraction of surface voxels of both masks lying within tau of the other surface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from volrob.errors import ConfigError

DISTANCE_SLACK_MM = 1e-9
"""Distances this close above a tolerance count as within it (absorbs rounding in the distance transform)."""


def check_spacing(spacing: Sequence[float], ndim: int = 3) -> tuple[float, ...]:
    """``spacing`` as a tuple of ``ndim`` positive finite floats (mm); anything else raises :class:`ConfigError`."""
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ConfigError(f"spacing must be {ndim} positive numbers (mm), got {spacing!r}") from None
    if len(values) != ndim or not all(math.isfinite(s) and s > 0 for s in values):
        raise ConfigError(f"spacing must be {ndim} positive finite numbers (mm), got {list(values)}")
    return values


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Boolean surface of ``mask``: the mask minus its erosion by the cross structuring element."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _union_box(a: np.ndarray, b: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of ``a | b`` grown by one voxel and clipped to the image."""
    union = a | b
    box = []
    for axis in range(union.ndim):
        other = tuple(i for i in range(union.ndim) if i != axis)
        idx = np.flatnonzero(union.any(axis=other))
        box.append(slice(max(int(idx[0]) - 1, 0), min(int(idx[-1]) + 2, union.shape[axis])))
    return tuple(box)


def surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances (mm): ``(d(pred -> gt), d(gt -> pred))``, one value per surface voxel.

    Both masks must be non-empty and of equal shape (empty cases belong to :mod:`volrob.evaluation.empty_policy`).
    """
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ConfigError(f"pred and gt shapes differ: {list(pred.shape)} vs {list(gt.shape)}")
    sampling = check_spacing(spacing, pred.ndim)
    if not (pred.any() and gt.any()):
        raise ConfigError("surface distances need a non-empty prediction and a non-empty ground truth")
    box = _union_box(pred, gt)
    surf_pred, surf_gt = surface_voxels(pred[box]), surface_voxels(gt[box])
    to_gt = ndimage.distance_transform_edt(~surf_gt, sampling=sampling)
    to_pred = ndimage.distance_transform_edt(~surf_pred, sampling=sampling)
    return to_gt[surf_pred], to_pred[surf_gt]


def percentile_hausdorff(d_pred_gt: np.ndarray, d_gt_pred: np.ndarray, percentile: float = 95.0) -> float:
    """Larger of the two directed ``percentile``-th surface distances (MONAI's HD_p definition)."""
    if not 0.0 <= percentile <= 100.0:
        raise ConfigError(f"percentile must lie in [0, 100], got {percentile}")
    if len(d_pred_gt) == 0 or len(d_gt_pred) == 0:
        raise ConfigError("percentile Hausdorff distance needs two non-empty sets of surface distances")
    return float(max(np.percentile(d_pred_gt, percentile), np.percentile(d_gt_pred, percentile)))


def surface_dice(d_pred_gt: np.ndarray, d_gt_pred: np.ndarray, tolerance_mm: float) -> float:
    """Fraction of both surfaces' voxels within ``tolerance_mm`` of the other surface (NSD, voxel counting)."""
    tol = float(tolerance_mm)
    if not (math.isfinite(tol) and tol >= 0):
        raise ConfigError(f"nsd tolerance must be a finite number >= 0 (mm), got {tolerance_mm!r}")
    total = len(d_pred_gt) + len(d_gt_pred)
    if total == 0:
        raise ConfigError("surface Dice needs at least one surface voxel")
    limit = tol + DISTANCE_SLACK_MM
    return float((np.count_nonzero(d_pred_gt <= limit) + np.count_nonzero(d_gt_pred <= limit)) / total)
