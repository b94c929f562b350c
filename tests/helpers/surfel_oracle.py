"""A brute-force surface-element HD for tests, independent of volrob's implementation: it visits every point of the
full (uncropped) voxel-corner grid one by one, reads its 8 voxels with explicit bounds checks, takes the surface
areas from MONAI's copy of DeepMind's table, measures all pairwise distances, and walks the sorted distances
accumulating area until the share reaches the percentile."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from monai.metrics.utils import create_table_neighbour_code_to_surface_area
from scipy.spatial.distance import cdist

MONAI_KERNEL = np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]])
"""MONAI's (and DeepMind's) weight of the voxel at offset (a, b, c) around a corner-grid point."""


def monai_areas(spacing: Sequence[float]) -> np.ndarray:
    return create_table_neighbour_code_to_surface_area(tuple(float(s) for s in spacing))[0].numpy().astype(float)


def elements(mask: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Every surface element of ``mask`` in raster order: its grid point (mm) and its area (mm²)."""
    mask = np.asarray(mask, dtype=bool)
    table = monai_areas(spacing)
    points, areas = [], []
    for point in itertools.product(*(range(n + 1) for n in mask.shape)):
        code = 0
        for a, b, c in itertools.product((0, 1), repeat=3):
            v = (point[0] - 1 + a, point[1] - 1 + b, point[2] - 1 + c)
            if all(0 <= v[i] < mask.shape[i] for i in range(3)) and mask[v]:
                code += int(MONAI_KERNEL[a, b, c])
        if code not in (0, 255):
            points.append(np.array(point, float) * np.asarray(spacing, float))
            areas.append(table[code])
    return np.array(points).reshape(-1, 3), np.array(areas)


def directed(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) of ``a``'s surface elements to ``b``'s, and ``a``'s element areas."""
    pa, area_a = elements(a, spacing)
    pb, _ = elements(b, spacing)
    return cdist(pa, pb).min(axis=1), area_a


def weighted_percentile(distances: np.ndarray, areas: np.ndarray, percentile: float) -> float:
    """The first distance (sorted) at which the accumulated area share reaches ``percentile`` / 100."""
    pairs = sorted(zip(distances.tolist(), areas.tolist(), strict=True))
    total = float(np.sum(areas))
    acc = 0.0
    for d, a in pairs:
        acc += a
        if acc / total >= percentile / 100.0:
            return d
    return pairs[-1][0]


def hd(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], miss: float, percentile: float = 95.0) -> float:
    """Surface-element HD_p of two masks: 0 when both are empty, ``miss`` when one is. Distances do not change when
    both masks are cut to the box around their union, so they are (that keeps the loops short)."""
    if not pred.any() and not gt.any():
        return 0.0
    if not pred.any() or not gt.any():
        return miss
    idx = np.argwhere(pred | gt)
    box = tuple(slice(lo, hi + 1) for lo, hi in zip(idx.min(axis=0), idx.max(axis=0), strict=True))
    pred, gt = pred[box], gt[box]
    return max(weighted_percentile(*directed(pred, gt, spacing), percentile),
               weighted_percentile(*directed(gt, pred, spacing), percentile))
