"""Per-slice min-max rescaling: the last step of the published VAFA code, kept as an explicit, recorded option.

:func:`per_slice_minmax` maps every slice of every channel of every sample affinely onto ``[lo, hi]`` by that
slice's own minimum and maximum. A slice is the set of voxels that share one index along ``axis`` (the published
code normalises each (H, W) slice of its ``(B, C, H, W, D)`` input, i.e. one slice per index of the last spatial
axis). A constant slice (maximum equal to minimum) is left unchanged; the published code divides by zero there.
Nothing bounds how far a voxel moves: up to the whole range ``hi - lo``.
"""

from __future__ import annotations

import torch

from volrob.errors import ConfigError

RESCALES: tuple[str, ...] = ("none", "per_slice_minmax")


def spatial_axis(axis: int, ndim: int = 5) -> int:
    """``axis`` as a tensor dimension of a ``(B, C, *spatial)`` input of ``ndim`` dimensions; negative values count
    from the end (``-1``: the last spatial axis). ConfigError unless it names a spatial axis."""
    if isinstance(axis, bool) or not isinstance(axis, int) or not (2 <= axis < ndim or -(ndim - 2) <= axis < 0):
        raise ConfigError(f"vafa: rescale_axis must name a spatial axis (2..{ndim - 1}, or -1..-{ndim - 2} from the "
                          f"end) of the (B, C, D, H, W) input, got {axis!r}")
    return axis % ndim


def per_slice_minmax(x: torch.Tensor, *, axis: int = -1, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """``x`` (``(B, C, *spatial)``) with every slice along ``axis`` mapped onto ``[lo, hi]`` by its own minimum and
    maximum, per sample and channel; constant slices unchanged. Differentiable (a new tensor; ``x`` is untouched)."""
    if x.ndim < 3:
        raise ConfigError(f"vafa: per-slice rescaling needs a (B, C, *spatial) input, got {tuple(x.shape)}")
    dim = spatial_axis(axis, x.ndim)
    if not lo < hi:
        raise ConfigError(f"vafa: rescale range needs lo < hi, got [{lo}, {hi}]")
    others = [d for d in range(2, x.ndim) if d != dim]
    if not others:  # one spatial axis: every slice is a single voxel, hence constant
        return x.clone()
    low, high = x.amin(dim=others, keepdim=True), x.amax(dim=others, keepdim=True)
    span = high - low
    varies = span > 0
    scaled = (x - low) / torch.where(varies, span, torch.ones_like(span)) * (hi - lo) + lo
    return torch.where(varies, scaled, x)
