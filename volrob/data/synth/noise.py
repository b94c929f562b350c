"""Smooth random fields: white noise blurred on a coarse lattice, then linearly interpolated (fast, vectorised)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi


def _lattice(rng: np.random.Generator, shape: Sequence[int], scale: float) -> tuple[np.ndarray, float]:
    """Unit-variance smooth lattice for correlation length ``scale`` (voxels) and its down-sampling factor."""
    factor = max(1.0, scale / 1.5)
    low = tuple(max(4, int(np.ceil((n - 1) / factor)) + 1) for n in shape)
    field = ndi.gaussian_filter(rng.standard_normal(low, dtype=np.float32), sigma=scale / factor, mode="wrap")
    field -= field.mean()
    field /= field.std() + np.float32(1e-12)
    return field, factor


def upsample_linear(field: np.ndarray, shape: Sequence[int], factor: float) -> np.ndarray:
    """Separable linear interpolation of ``field`` at voxel ``i / factor`` along each axis, output ``shape``."""
    out = field
    for axis, n in enumerate(shape):
        pos = np.arange(n, dtype=np.float32) / np.float32(factor)
        i0 = np.minimum(pos.astype(np.int64), out.shape[axis] - 2)
        frac = (pos - i0).reshape([-1 if k == axis else 1 for k in range(out.ndim)])
        lo, hi = np.take(out, i0, axis=axis), np.take(out, i0 + 1, axis=axis)
        out = lo + frac * (hi - lo)
    return out


def smooth_field(rng: np.random.Generator, shape: Sequence[int], scale: float) -> np.ndarray:
    """A zero-mean, unit-std smooth random field of ``shape`` with gaussian correlation length ``scale`` voxels."""
    field, factor = _lattice(rng, shape, scale)
    out = field[tuple(slice(0, n) for n in shape)] if factor == 1.0 else upsample_linear(field, shape, factor)
    out = out - out.mean()
    return (out / (out.std() + 1e-12)).astype(np.float32)


class NoiseVolume:
    """A smooth random field defined on a box of ``shape`` voxels, sampled at arbitrary (warped) points."""

    def __init__(self, rng: np.random.Generator, shape: Sequence[int], scale: float) -> None:
        self.field, self.factor = _lattice(rng, shape, scale)

    def sample(self, points: np.ndarray) -> np.ndarray:
        """Values at voxel coordinates ``points`` of shape ``(3, ...)`` (trilinear; outside: nearest edge)."""
        return ndi.map_coordinates(self.field, np.asarray(points, dtype=np.float32) / np.float32(self.factor),
                                   order=1, mode="nearest").astype(np.float32)
