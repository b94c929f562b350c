"""Boolean test masks: axis-aligned boxes and smooth random blobs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def box(shape: Sequence[int], lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
    """A boolean volume that is True on ``[lo, hi)`` along every axis."""
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return m


def blob(rng: np.random.Generator, shape: Sequence[int], sigma: float, quantile: float) -> np.ndarray:
    """A smooth random region: smoothed white noise above its ``quantile``."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field > np.quantile(field, quantile)
