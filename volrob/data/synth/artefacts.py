"""Acquisition artefacts: partial-volume blur, smooth multiplicative bias field, Rician noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi


def partial_volume(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``sigma`` voxels (mixes tissues at boundaries as a finite voxel does)."""
    return ndi.gaussian_filter(image, sigma=sigma, mode="nearest")


def bias_field(rng: np.random.Generator, shape: Sequence[int], amplitude: float) -> np.ndarray:
    """Smooth multiplicative field ``exp(p)``, ``p`` a random quadratic polynomial with ``max |p| = amplitude``.

    Coordinates run over [-1, 1] on each axis; the field stays within ``[exp(-amplitude), exp(amplitude)]``.
    """
    u, v, w = (np.linspace(-1.0, 1.0, n, dtype=np.float32).reshape([-1 if i == k else 1 for i in range(3)])
               for k, n in enumerate(shape))
    terms = (u, v, w, u * v, u * w, v * w, u**2 - 1 / 3, v**2 - 1 / 3, w**2 - 1 / 3)
    coef = rng.normal(0.0, 1.0, len(terms)).astype(np.float32)
    coef[3:] *= 0.5
    poly = sum(c * t for c, t in zip(coef, terms, strict=True))
    poly = np.broadcast_to(poly, tuple(shape))
    poly = poly * np.float32(amplitude / max(float(np.abs(poly).max()), 1e-6))
    return np.exp(poly).astype(np.float32)


def rician_noise(rng: np.random.Generator, values: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of a complex signal with gaussian noise of ``sigma`` on both channels (Rician distribution)."""
    real = values + np.float32(sigma) * rng.standard_normal(values.shape, dtype=np.float32)
    imag = np.float32(sigma) * rng.standard_normal(values.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag)
