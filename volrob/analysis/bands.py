"""Frequency bands of a perturbation on the full-volume orthonormal 3D DCT.

Coefficient ``(k_0, k_1, k_2)`` of a volume of shape ``(N_0, N_1, N_2)`` has the *normalised radius*
``r = sqrt(sum_i (k_i / N_i)^2) / sqrt(3)`` in ``[0, 1)``. A band ``[low, high)`` holds the coefficients with
``low <= r < high``; a band whose upper edge is 1 also holds ``r = 1``. Bands cut at the same edges therefore
partition the coefficients exactly (every coefficient in one band, no overlap).

Because the DCT is orthonormal, filtering with complementary masks splits ``delta`` into parts that sum back to
``delta``, and the energy of a band is the sum of its squared coefficients (Parseval).
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Mapping, Sequence

import torch

from volrob.errors import ConfigError
from volrob.signal.dct import dct_nd, idct_nd

SPATIAL_DIMS: tuple[int, int, int] = (2, 3, 4)


def check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """A spatial shape as three positive integers (``ConfigError`` otherwise)."""
    try:
        dims = tuple(shape)
    except TypeError:
        raise ConfigError(f"bands: shape must be three positive integers (D, H, W), got {shape!r}") from None
    if len(dims) != 3 or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1 for n in dims):
        raise ConfigError(f"bands: shape must be three positive integers (D, H, W), got {shape!r}")
    return int(dims[0]), int(dims[1]), int(dims[2])


def frequency_radius(shape: Sequence[int], *, device: torch.device | str = "cpu") -> torch.Tensor:
    """Normalised radius ``r`` (float64, shape ``shape``) of every DCT coefficient; see the module docstring."""
    dims = check_shape(shape)
    axes = [torch.arange(n, dtype=torch.float64, device=device) / n for n in dims]
    kd, kh, kw = torch.meshgrid(*axes, indexing="ij")
    return torch.sqrt(kd**2 + kh**2 + kw**2) / math.sqrt(3.0)


def _check_edge(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"bands: {name} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_edges(edges: Sequence[float]) -> list[float]:
    """Band edges: numbers strictly increasing from 0 to 1, at least two (``ConfigError`` otherwise)."""
    try:
        values = [_check_edge("edges", e) for e in edges]
    except TypeError:
        raise ConfigError(f"bands: edges must be a sequence of numbers from 0 to 1, got {edges!r}") from None
    if len(values) < 2 or values[0] != 0.0 or values[-1] != 1.0:
        raise ConfigError(f"bands: edges must start at 0 and end at 1 (at least two), got {list(edges)}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ConfigError(f"bands: edges must be strictly increasing, got {list(edges)}")
    return values


def band_index(shape: Sequence[int], edges: Sequence[float], *, device: torch.device | str = "cpu") -> torch.Tensor:
    """Index (int64, shape ``shape``) of the band ``[edges[i], edges[i+1])`` each coefficient falls in."""
    values = check_edges(edges)
    inner = torch.tensor(values[1:-1], dtype=torch.float64, device=device)
    return torch.bucketize(frequency_radius(shape, device=device), inner, right=True)


def band_mask(shape: Sequence[int], low: float, high: float, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean mask of the coefficients with ``low <= r < high`` (``r <= 1`` when ``high`` is 1)."""
    lo, hi = _check_edge("low", low), _check_edge("high", high)
    if hi <= lo:
        raise ConfigError(f"bands: low must be below high, got low={low!r}, high={high!r}")
    r = frequency_radius(shape, device=device)
    return (r >= lo) & ((r < hi) if hi < 1.0 else (r <= 1.0))


def band_name(low: float, high: float) -> str:
    """A readable band label such as ``"0-0.1"``."""
    return f"{low:g}-{high:g}"


def split_bands(shape: Sequence[int], edges: Sequence[float], *,
                device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Masks of the bands between consecutive ``edges`` (e.g. ``[0, 0.1, 0.3, 1]``), named by :func:`band_name`.

    The masks partition the coefficients: disjoint, and their union is every coefficient.
    """
    values = check_edges(edges)
    index = band_index(shape, values, device=device)
    return {band_name(lo, hi): index == i for i, (lo, hi) in enumerate(itertools.pairwise(values))}


def low_high(shape: Sequence[int], cutoff: float, *,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Complementary ``(low, high)`` masks: ``r < cutoff`` and the rest (``cutoff`` 1 puts everything in low)."""
    c = _check_edge("cutoff", cutoff)
    r = frequency_radius(shape, device=device)
    low = (r < c) if c < 1.0 else torch.ones_like(r, dtype=torch.bool)
    return low, ~low


def _check_delta(delta: torch.Tensor) -> None:
    if not isinstance(delta, torch.Tensor) or not delta.is_floating_point() or delta.ndim != 5:
        got = f"{delta.ndim}-D {delta.dtype}" if isinstance(delta, torch.Tensor) else type(delta).__name__
        raise ConfigError(f"bands: delta must be a floating-point (B, C, D, H, W) tensor, got {got}")


def _check_mask(mask: torch.Tensor, spatial: torch.Size) -> None:
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise ConfigError(f"bands: a mask must be a bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    if mask.shape != spatial:
        raise ConfigError(f"bands: mask shape {tuple(mask.shape)} does not match delta's spatial shape "
                          f"{tuple(spatial)}")


def filter_delta(delta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Keep only the DCT coefficients of ``delta`` (B, C, D, H, W) inside ``mask`` (D, H, W): ``idct(dct * mask)``."""
    _check_delta(delta)
    _check_mask(mask, delta.shape[2:])
    coeffs = dct_nd(delta, SPATIAL_DIMS)
    return idct_nd(coeffs * mask.to(device=delta.device, dtype=delta.dtype), SPATIAL_DIMS)


def _as_list(masks: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    items = list(masks.values()) if isinstance(masks, Mapping) else list(masks)
    if not items:
        raise ConfigError("bands: masks must hold at least one mask")
    return items


def coefficient_power(delta: torch.Tensor) -> torch.Tensor:
    """Squared DCT coefficients of ``delta`` summed over channels: ``(B, D, H, W)``."""
    _check_delta(delta)
    return dct_nd(delta, SPATIAL_DIMS).square().sum(dim=1)


def band_energy(delta: torch.Tensor, masks: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> torch.Tensor:
    """Fraction of each sample's perturbation energy in each band: ``(B, len(masks))``, in the masks' order.

    Energy is the sum of squared DCT coefficients over the band and all channels, divided by the sample's total
    (equal to ``sum(delta**2)`` by Parseval). A sample with zero energy gets NaN: its fractions are undefined.
    """
    _check_delta(delta)
    items = _as_list(masks)
    for mask in items:
        _check_mask(mask, delta.shape[2:])
    power = coefficient_power(delta).flatten(1)
    total = power.sum(dim=1)
    parts = [(power * m.flatten().to(device=power.device, dtype=power.dtype)).sum(dim=1) for m in items]
    energy = torch.stack(parts, dim=1)
    return torch.where(total[:, None] > 0, energy / total.clamp_min(torch.finfo(power.dtype).tiny)[:, None],
                       torch.full_like(energy, float("nan")))
